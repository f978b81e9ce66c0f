package io.devicegateway.ingest;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;

import jakarta.inject.Inject;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3AsyncClient;

import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.PrometheusText;
import io.devicegateway.testing.SharedServers;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * What a stock Mosquitto drops for good is counted and named, not silently missing. With the Receive Maximum reached
 * and its session queue (max_queued_messages, 1000) full, Mosquitto numbers each further message for the session and
 * then drops it: the gateway sees the skipped packet ids, takes the session over for a resend, finds that the resend
 * starts past them, and reports exactly those as lost (ERROR log, {@code gateway_mqtt_broker_lost_total}).
 */
@QuarkusTest
@TestProfile(BrokerLossTest.SmallWindow.class)
class BrokerLossTest {

    private static final int WINDOW = 50;
    private static final int PUBLISHED = 3_000;

    public static class SmallWindow implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of(
                    "gateway.mqtt.client-id", "dgw-test-broker-loss-" + UUID.randomUUID(),
                    "gateway.mqtt.receive-maximum", Integer.toString(WINDOW));
        }
    }

    @Inject
    MqttConnection connection;

    @Test
    void countsExactlyTheMessagesTheBrokerDroppedForGood() throws Exception {
        LocalServers servers = SharedServers.get();
        String id = Devices.uniqueId("loss");
        double lostBefore = metric("gateway_mqtt_broker_lost_total");
        Mqtt3AsyncClient device = MqttClient.builder().useMqttVersion3().identifier("loss-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildAsync();
        device.connect().join();
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            connection.pauseInbound("test-loss");
            try {
                // the broker acknowledges all of them to the device: 50 in flight, 1000 queued, the rest dropped
                publishAll(device, "devices/" + id + "/telemetry");
            } finally {
                connection.resumeInbound("test-loss");
            }
            Awaitility.await().atMost(Duration.ofSeconds(60)).until(() -> metric("gateway_mqtt_broker_lost_total")
                    - lostBefore + telemetry.upToEnd(r -> id.equals(r.key())).size() >= PUBLISHED);
            List<ConsumerRecord<String, byte[]>> records = telemetry.upToEnd(r -> id.equals(r.key()));
            double lost = metric("gateway_mqtt_broker_lost_total") - lostBefore;
            assertTrue(lost > 0, "the broker dropped messages (else this test shows nothing)");
            assertEquals(PUBLISHED - records.size(), lost, 0.0, "lost = acknowledged to the device, not in Kafka");
            long previous = -1;
            for (ConsumerRecord<String, byte[]> r : records) {
                long seq = ByteBuffer.wrap(io.devicegateway.v1.DeviceMessage.parseFrom(r.value()).getPayload()
                        .toByteArray()).getLong();
                assertTrue(seq > previous, "device order");
                previous = seq;
            }
        } finally {
            device.disconnect().join();
        }
    }

    private static double metric(String series) {
        double value = PrometheusText.sample(given().get("/q/metrics").asString(), series);
        return Double.isNaN(value) ? 0 : value;
    }

    private static void publishAll(Mqtt3AsyncClient client, String topic) {
        Semaphore window = new Semaphore(200);
        List<CompletableFuture<?>> sends = new ArrayList<>();
        for (long seq = 0; seq < PUBLISHED; seq++) {
            window.acquireUninterruptibly();
            sends.add(client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE)
                    .payload(ByteBuffer.allocate(100).putLong(0, seq)).send()
                    .whenComplete((r, e) -> window.release()));
        }
        CompletableFuture.allOf(sends.toArray(CompletableFuture[]::new)).join();
    }
}
