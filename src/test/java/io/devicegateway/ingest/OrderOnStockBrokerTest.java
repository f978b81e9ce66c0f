package io.devicegateway.ingest;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;

import jakarta.inject.Inject;

import org.apache.kafka.clients.consumer.ConsumerRecord;
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
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Per-device order on a broker with its default settings (Mosquitto's max_inflight_messages 20): several devices
 * publish QoS 1 as fast as the broker takes it, and every device's records reach Kafka in the order it sent them.
 * With an MQTT 3.1.1 subscriber that acknowledges after Kafka, the broker's small window let later messages overtake
 * queued ones (18 % out of order measured); the gateway's MQTT 5 Receive Maximum sets its own window.
 */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class OrderOnStockBrokerTest {

    private static final int DEVICES = 8;
    private static final int PER_DEVICE = 2_500;

    @Test
    void keepsEveryDevicesOrderAtFullRateOnADefaultBroker() throws Exception {
        LocalServers servers = SharedServers.get();
        List<String> ids = new ArrayList<>();
        List<Mqtt3AsyncClient> clients = new ArrayList<>();
        for (int d = 0; d < DEVICES; d++) {
            ids.add(Devices.uniqueId("order"));
            Mqtt3AsyncClient client = MqttClient.builder().useMqttVersion3().identifier("order-" + UUID.randomUUID())
                    .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildAsync();
            client.connect().join();
            clients.add(client);
        }
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            List<CompletableFuture<Void>> done = new ArrayList<>();
            for (int d = 0; d < DEVICES; d++) {
                Mqtt3AsyncClient client = clients.get(d);
                String topic = "devices/" + ids.get(d) + "/telemetry";
                done.add(CompletableFuture.runAsync(() -> publishAll(client, topic)));
            }
            CompletableFuture.allOf(done.toArray(CompletableFuture[]::new)).join();

            assertAllInDeviceOrder(records(telemetry, ids, PER_DEVICE, Duration.ofSeconds(60)), ids, PER_DEVICE);
        } finally {
            clients.forEach(c -> c.disconnect().join());
        }
    }

    /**
     * Mosquitto 2.0 (since the CVE-2023-28366 fix) frees any packet for a client whose socket queue already holds
     * max_queued_messages (1,000) packets, QoS 1 PUBLISH included, and keeps the message in flight in the session
     * until the next connection. The gateway stops reading here (as it would behind a long GC pause or a starved
     * CPU) while devices publish 20 MB, and 8 MB more while it recovers; the broker drops part of it; once reads resume, the gateway notices the skipped
     * packet ids, reconnects, and every message still reaches Kafka in device order.
     */
    @Test
    void recoversMessagesTheBrokerDroppedForALaggingGatewayInOrder() throws Exception {
        LocalServers servers = SharedServers.get();
        int devices = 4;
        int first = 5_000; // while the gateway does not read
        int more = 2_000; // while it recovers
        int perDevice = first + more;
        double droppedBefore = metric("gateway_mqtt_broker_dropped_total");
        double resendsBefore = metric("gateway_mqtt_resend_reconnects_total");
        List<String> ids = new ArrayList<>();
        List<Mqtt3AsyncClient> clients = new ArrayList<>();
        for (int d = 0; d < devices; d++) {
            ids.add(Devices.uniqueId("lag"));
            Mqtt3AsyncClient client = MqttClient.builder().useMqttVersion3().identifier("lag-" + UUID.randomUUID())
                    .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildAsync();
            client.connect().join();
            clients.add(client);
        }
        connection.pauseInbound("test-lag");
        boolean paused = true;
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            List<CompletableFuture<Void>> done = new ArrayList<>();
            for (int d = 0; d < devices; d++) {
                Mqtt3AsyncClient client = clients.get(d);
                String topic = "devices/" + ids.get(d) + "/telemetry";
                done.add(CompletableFuture.runAsync(() -> publishAll(client, topic, 0, first, 1_000)));
            }
            CompletableFuture.allOf(done.toArray(CompletableFuture[]::new)).join(); // the broker took every one
            connection.resumeInbound("test-lag");
            paused = false;
            // the devices go on while the gateway recovers: new messages interleave with the broker's resends
            done.clear();
            for (int d = 0; d < devices; d++) {
                Mqtt3AsyncClient client = clients.get(d);
                String topic = "devices/" + ids.get(d) + "/telemetry";
                done.add(CompletableFuture.runAsync(() -> publishAll(client, topic, first, more, 1_000)));
            }
            CompletableFuture.allOf(done.toArray(CompletableFuture[]::new)).join();

            List<ConsumerRecord<String, byte[]>> records = records(telemetry, ids, perDevice, Duration.ofSeconds(90));
            assertTrue(metric("gateway_mqtt_broker_dropped_total") > droppedBefore,
                    "the broker dropped messages for the lagging gateway (else this test shows nothing)");
            assertTrue(metric("gateway_mqtt_resend_reconnects_total") > resendsBefore, "reconnected for the resend");
            assertAllInDeviceOrder(records, ids, perDevice);
        } finally {
            if (paused) {
                connection.resumeInbound("test-lag");
            }
            clients.forEach(c -> c.disconnect().join());
        }
    }

    @Inject
    MqttConnection connection;

    /** Every record of these devices, waiting for {@code perDevice} each; what arrived if they never all do. */
    private static List<ConsumerRecord<String, byte[]>> records(KafkaRecords telemetry, List<String> ids,
            int perDevice, Duration timeout) {
        Set<String> ours = Set.copyOf(ids);
        try {
            return telemetry.await(r -> ours.contains(r.key()), ids.size() * perDevice, timeout);
        } catch (org.awaitility.core.ConditionTimeoutException e) {
            return telemetry.drain(r -> ours.contains(r.key())); // the counts in the assertions say what is missing
        }
    }

    /** No record after a later one of the same device, and {@code perDevice} records of each device. */
    private static void assertAllInDeviceOrder(List<ConsumerRecord<String, byte[]>> records, List<String> ids,
            int perDevice) throws Exception {
        Map<String, Long> last = new HashMap<>();
        Map<String, Integer> counts = new HashMap<>();
        long outOfOrder = 0;
        for (ConsumerRecord<String, byte[]> record : records) {
            long seq = ByteBuffer.wrap(io.devicegateway.v1.DeviceMessage.parseFrom(record.value()).getPayload()
                    .toByteArray()).getLong();
            Long previous = last.put(record.key(), seq);
            if (previous != null && seq <= previous) {
                outOfOrder++;
            }
            counts.merge(record.key(), 1, Integer::sum);
        }
        assertEquals(0, outOfOrder, "records out of device order");
        for (String id : ids) {
            assertEquals(perDevice, counts.getOrDefault(id, 0), "records of " + id);
        }
    }

    private static double metric(String series) {
        double value = PrometheusText.sample(given().get("/q/metrics").asString(), series);
        return Double.isNaN(value) ? 0 : value;
    }

    private static void publishAll(Mqtt3AsyncClient client, String topic) {
        publishAll(client, topic, 0, PER_DEVICE, 100);
    }

    /** QoS 1 as fast as the broker acknowledges, at most 500 unacknowledged per device (a real device's queue). */
    private static void publishAll(Mqtt3AsyncClient client, String topic, long first, int count, int size) {
        Semaphore window = new Semaphore(500);
        List<CompletableFuture<?>> sends = new ArrayList<>();
        for (long seq = first; seq < first + count; seq++) {
            window.acquireUninterruptibly();
            sends.add(client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE)
                    .payload(ByteBuffer.allocate(size).putLong(0, seq)).send()
                    .whenComplete((r, e) -> window.release()));
        }
        CompletableFuture.allOf(sends.toArray(CompletableFuture[]::new)).join();
    }
}
