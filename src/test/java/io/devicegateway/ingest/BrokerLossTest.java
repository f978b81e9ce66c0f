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
                publishAll(device, "devices/" + id + "/telemetry", PUBLISHED);
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

    /**
     * While the broker keeps dropping (a small window that fills at once, a device publishing flat out, the gateway
     * reading throughout), gaps come every few messages. The first is checked with a takeover at once; after that the
     * gateway notes the gaps and checks them with one takeover per resend hold-off (1 s), instead of one per gap,
     * and still reports exactly the messages that are gone.
     */
    @Test
    void checksGapsWithOneTakeoverPerHoldOffWhileTheBrokerKeepsDropping() throws Exception {
        LocalServers servers = SharedServers.get();
        String id = Devices.uniqueId("storm");
        int published = 20_000;
        double lostBefore = metric("gateway_mqtt_broker_lost_total");
        double takeoversBefore = metric("gateway_mqtt_resend_reconnects_total");
        double lateBefore = metric("gateway_mqtt_broker_resent_late_total");
        Mqtt3AsyncClient device = MqttClient.builder().useMqttVersion3().identifier("storm-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildAsync();
        device.connect().join();
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            long started = System.nanoTime();
            publishAll(device, "devices/" + id + "/telemetry", published);
            Awaitility.await().atMost(Duration.ofSeconds(90)).until(() -> metric("gateway_mqtt_broker_lost_total")
                    - lostBefore + telemetry.upToEnd(r -> id.equals(r.key())).size() >= published);
            double seconds = (System.nanoTime() - started) / 1e9;
            List<ConsumerRecord<String, byte[]>> records = telemetry.upToEnd(r -> id.equals(r.key()));
            double lost = metric("gateway_mqtt_broker_lost_total") - lostBefore;
            double takeovers = metric("gateway_mqtt_resend_reconnects_total") - takeoversBefore;
            double late = metric("gateway_mqtt_broker_resent_late_total") - lateBefore;
            assertTrue(lost > 100, "the broker kept dropping (else this test shows nothing): " + lost);
            assertEquals(published - records.size(), lost, 0.0, "lost = acknowledged to the device, not in Kafka");
            assertTrue(takeovers <= seconds + 3, takeovers + " takeovers in " + seconds + " s, " + lost
                    + " messages lost: one per hold-off, not one per gap");
            int behind = 0;
            long previous = -1;
            for (ConsumerRecord<String, byte[]> r : records) {
                long seq = ByteBuffer.wrap(io.devicegateway.v1.DeviceMessage.parseFrom(r.value()).getPayload()
                        .toByteArray()).getLong();
                behind += seq > previous ? 0 : 1;
                previous = Math.max(previous, seq);
            }
            // only a message the broker still held when the hold-off's check came may arrive late
            assertTrue(behind <= late, behind + " records behind a later one, " + late + " resent late");
        } finally {
            device.disconnect().join();
        }
    }

    private static double metric(String series) {
        double value = PrometheusText.sample(given().get("/q/metrics").asString(), series);
        return Double.isNaN(value) ? 0 : value;
    }

    private static void publishAll(Mqtt3AsyncClient client, String topic, int count) {
        Semaphore window = new Semaphore(200);
        List<CompletableFuture<?>> sends = new ArrayList<>();
        for (long seq = 0; seq < count; seq++) {
            window.acquireUninterruptibly();
            sends.add(client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE)
                    .payload(ByteBuffer.allocate(100).putLong(0, seq)).send()
                    .whenComplete((r, e) -> window.release()));
        }
        CompletableFuture.allOf(sends.toArray(CompletableFuture[]::new)).join();
    }
}
