package io.devicegateway.ingest;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.MqttWireTap;
import io.devicegateway.testing.PrometheusText;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * At least once across a Kafka outage, observed on the wire: the gateway talks to Mosquitto through a tap
 * that records every PUBACK it sends, and this test stops and restarts its own Kafka broker.
 */
@QuarkusTest
@TestProfile(KafkaOutageTest.OwnServers.class)
class KafkaOutageTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);
    private static final int MAX_IN_FLIGHT = 100;
    private static final long MAX_IN_FLIGHT_BYTES = 1 << 20;

    /** Own Kafka, Mosquitto and Redis (this test stops Kafka), and the wire tap in front of Mosquitto. */
    public static class OwnServers implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers servers;
        static MqttWireTap tap;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(OwnServers.class));
        }

        @Override
        public Map<String, String> start() {
            // an authorizer that allows everything until a test adds a DENY ACL (a refusal that is not about size)
            servers = LocalServers.startWith("kafka-outage", 0, m -> m.maxQueuedMessages = 1_000_000, k -> {
                k.extraConfig.setProperty("authorizer.class.name",
                        "org.apache.kafka.metadata.authorizer.StandardAuthorizer");
                k.extraConfig.setProperty("allow.everyone.if.no.acl.found", "true");
            });
            // iot.events refuses records over 2,000 bytes from the start: smaller than the producers' batch.size
            try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
                    Map.of("bootstrap.servers", servers.kafka.bootstrapServers()))) {
                var topic = new org.apache.kafka.common.config.ConfigResource(
                        org.apache.kafka.common.config.ConfigResource.Type.TOPIC, "iot.events");
                admin.incrementalAlterConfigs(Map.of(topic, List.of(new org.apache.kafka.clients.admin.AlterConfigOp(
                        new org.apache.kafka.clients.admin.ConfigEntry("max.message.bytes", "2000"),
                        org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET)))).all().get();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            try {
                tap = new MqttWireTap(servers.mosquitto.port);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            Map<String, String> config = new HashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.port", Integer.toString(tap.port()));
            config.put("gateway.mqtt.client-id", "dgw-test-outage");
            config.put("gateway.ingest.max-in-flight", Integer.toString(MAX_IN_FLIGHT));
            config.put("gateway.ingest.max-in-flight-bytes", Long.toString(MAX_IN_FLIGHT_BYTES));
            config.put("gateway.kafka.writer.stall-timeout", "1s");
            return config;
        }

        @Override
        public void stop() {
            tap.close();
            servers.close();
        }
    }

    @AfterAll
    static void restoreKafka() {
        if (!OwnServers.servers.kafka.running()) {
            OwnServers.servers.kafka.start();
        }
    }

    @Test
    void withholdsPubAckWhileKafkaIsDownAndDeliversOnceItIsBack() throws Exception {
        LocalServers servers = OwnServers.servers;
        MqttWireTap tap = OwnServers.tap;
        String id = Devices.uniqueId("outage");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            awaitReadiness(200);
            // baseline: one message, one PUBACK, after Kafka has it
            Devices.publish(device, "devices/" + id + "/telemetry", "before".getBytes(StandardCharsets.UTF_8), 1);
            telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT);
            Awaitility.await().atMost(TIMEOUT).until(() -> tap.pubAcks().size() == 1);

            servers.kafka.stop(true); // kill -9
            awaitReadiness(503);

            Devices.publish(device, "devices/" + id + "/telemetry", "during".getBytes(StandardCharsets.UTF_8), 1);
            Awaitility.await().atMost(TIMEOUT).until(() -> inFlight() == 1.0); // the gateway holds it
            // and does not acknowledge it to the broker while Kafka cannot have it
            Awaitility.await().during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(5))
                    .until(() -> tap.pubAcks().size() == 1);

            long restartedAt = System.currentTimeMillis();
            servers.kafka.start();
            List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> id.equals(r.key()), 2, TIMEOUT);
            assertEquals("during", DeviceMessage.parseFrom(records.get(records.size() - 1).value()).getPayload()
                    .toStringUtf8());
            Awaitility.await().atMost(TIMEOUT).until(() -> tap.pubAcks().size() == 2);
            assertTrue(tap.pubAcks().get(1).atMillis() >= restartedAt, "PUBACK only after Kafka came back");
            Awaitility.await().atMost(TIMEOUT).until(() -> inFlight() == 0.0);
            awaitReadiness(200);
        } finally {
            device.disconnect();
        }
    }

    @Test
    void stopsReadingFromTheBrokerAtTheInFlightBoundAndDrainsAfterKafkaReturns() {
        LocalServers servers = OwnServers.servers;
        String id = Devices.uniqueId("flood");
        int count = 5_000; // QoS 0: no broker-side window, only the gateway's own bound holds them back
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            awaitReadiness(200);
            servers.kafka.stop(false);
            awaitReadiness(503);
            for (int i = 0; i < count; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", new byte[100], 0);
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> metric("gateway_mqtt_inbound_paused") == 1.0);
            // it holds steady at the bound (plus what the socket read in progress already held: at most one
            // 64 KiB read of 100-byte messages) while the rest wait at the broker
            double[] last = { -1 };
            Awaitility.await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(10)).until(() -> {
                double now = metric("gateway_ingest_in_flight");
                boolean steady = now == last[0];
                last[0] = now;
                return steady;
            });
            assertTrue(last[0] >= MAX_IN_FLIGHT && last[0] <= MAX_IN_FLIGHT + 65_536 / 100,
                    "in flight " + last[0] + " of " + count);

            servers.kafka.start();
            assertEquals(count, telemetry.await(r -> id.equals(r.key()), count, TIMEOUT).size());
            Awaitility.await().atMost(TIMEOUT).until(() -> metric("gateway_mqtt_inbound_paused") == 0.0);
            awaitReadiness(200);
        } finally {
            device.disconnect();
        }
    }

    @Test
    void deadLettersARecordKafkaRefusesForGood() throws Exception {
        LocalServers servers = OwnServers.servers;
        awaitReadiness(200);
        try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
                Map.of("bootstrap.servers", servers.kafka.bootstrapServers()))) {
            var topic = new org.apache.kafka.common.config.ConfigResource(
                    org.apache.kafka.common.config.ConfigResource.Type.TOPIC, "iot.events");
            admin.incrementalAlterConfigs(Map.of(topic, List.of(new org.apache.kafka.clients.admin.AlterConfigOp(
                    new org.apache.kafka.clients.admin.ConfigEntry("max.message.bytes", "2000"),
                    org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET)))).all().get();
        }
        String id = Devices.uniqueId("huge");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq")) {
            // under the gateway's 256 KiB limit, over this topic's 2,000 bytes: only Kafka can refuse it
            Devices.publish(device, "devices/" + id + "/events/snapshot", new byte[10_000], 1);
            ConsumerRecord<String, byte[]> record = dlq.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
            assertEquals("kafka-rejected", KafkaRecords.header(record, "reason"));
            assertEquals("10000", KafkaRecords.header(record, "payload-size"));
            assertEquals(0, DeviceMessage.parseFrom(record.value()).getPayload().size());
            Awaitility.await().atMost(TIMEOUT).until(() -> inFlight() == 0.0);
        } finally {
            device.disconnect();
        }
    }

    @Test
    void holdsARecordKafkaRefusesForAnotherReasonAndWritesItOnceTheCauseIsFixed() throws Exception {
        LocalServers servers = OwnServers.servers;
        awaitReadiness(200);
        String id = Devices.uniqueId("denied");
        var deny = new org.apache.kafka.common.acl.AclBinding(
                new org.apache.kafka.common.resource.ResourcePattern(
                        org.apache.kafka.common.resource.ResourceType.TOPIC, "iot.telemetry",
                        org.apache.kafka.common.resource.PatternType.LITERAL),
                new org.apache.kafka.common.acl.AccessControlEntry("User:ANONYMOUS", "*",
                        org.apache.kafka.common.acl.AclOperation.WRITE,
                        org.apache.kafka.common.acl.AclPermissionType.DENY));
        double refusalsBefore = metric("gateway_kafka_writer_refusals_total{writer=\"ingest\"}");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(
                Map.of("bootstrap.servers", servers.kafka.bootstrapServers()));
                KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
                KafkaRecords dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq")) {
            admin.createAcls(List.of(deny)).all().get();
            try {
                for (int i = 0; i < 20; i++) {
                    Devices.publish(device, "devices/" + id + "/telemetry", ("m" + i).getBytes(StandardCharsets.UTF_8), 1);
                }
                // refused, counted, reported by readiness with the cause, and held: neither written nor dead-lettered
                Awaitility.await().atMost(TIMEOUT).until(
                        () -> metric("gateway_kafka_writer_refusals_total{writer=\"ingest\"}") > refusalsBefore);
                Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(250)).until(() -> {
                    var response = given().get("/q/health/ready");
                    return response.statusCode() == 503 && response.asString().contains("TopicAuthorization");
                });
                assertEquals(20.0, inFlight());
                assertTrue(dlq.upToEnd(r -> id.equals(r.key())).isEmpty(), "nothing dead-lettered");
            } finally {
                admin.deleteAcls(List.of(deny.toFilter())).all().get();
            }
            // the cause fixed: everything is written, in order, without help
            List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> id.equals(r.key()), 20, TIMEOUT);
            for (int i = 0; i < 20; i++) {
                assertEquals("m" + i, DeviceMessage.parseFrom(records.get(i).value()).getPayload().toStringUtf8());
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> inFlight() == 0.0);
            awaitReadiness(200);
            assertTrue(dlq.upToEnd(r -> id.equals(r.key())).isEmpty(), "nothing dead-lettered");
        } finally {
            device.disconnect();
        }
    }

    @Test
    void boundsInFlightBytesWhileKafkaIsDown() {
        LocalServers servers = OwnServers.servers;
        String id = Devices.uniqueId("bytes");
        int size = 200 * 1024; // under the 256 KiB payload limit; 60 of them are 12 MiB
        int count = 60;
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            awaitReadiness(200);
            servers.kafka.stop(false);
            awaitReadiness(503);
            for (int i = 0; i < count; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", new byte[size], 1);
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> metric("gateway_mqtt_inbound_paused") == 1.0);
            double[] last = { -1 };
            Awaitility.await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(10)).until(() -> {
                double now = metric("gateway_ingest_in_flight_bytes");
                boolean steady = now == last[0];
                last[0] = now;
                return steady;
            });
            // the byte bound holds (plus at most the message being decoded when reading stopped), far below the
            // message bound of 100 x 200 KiB
            assertTrue(last[0] >= MAX_IN_FLIGHT_BYTES && last[0] <= MAX_IN_FLIGHT_BYTES + 2L * size,
                    "in flight " + last[0] + " bytes");
            assertTrue(inFlight() < MAX_IN_FLIGHT, "stopped by bytes, not by count");

            servers.kafka.start();
            assertEquals(count, telemetry.await(r -> id.equals(r.key()), count, TIMEOUT).size());
            Awaitility.await().atMost(TIMEOUT).until(() -> metric("gateway_ingest_in_flight_bytes") == 0.0);
            awaitReadiness(200);
        } finally {
            device.disconnect();
        }
    }

    @Test
    void warnsInReadinessWhenATopicAcceptsLessThanTheProducersBatchSize() {
        // KAFKA-8350: such a topic can stall a writer on a batch of several records; the operator is told
        Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(250)).until(() -> {
            String body = given().get("/q/health/ready").asString();
            return body.contains("iot.events max.message.bytes 2000 < producer batch.size 131072");
        });
    }

    private static void awaitReadiness(int status) {
        Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(250))
                .until(() -> given().get("/q/health/ready").statusCode() == status);
    }

    private static double inFlight() {
        return metric("gateway_ingest_in_flight");
    }

    private static double metric(String series) {
        return PrometheusText.sample(given().get("/q/metrics").asString(), series);
    }
}
