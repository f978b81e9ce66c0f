package io.devicegateway.dedup;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt5.Mqtt5BlockingClient;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.PrometheusText;
import io.devicegateway.testing.RedisCommands;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Duplicate removal (README: Duplicate removal) on the real servers: MQTT 5 devices number their messages with the
 * user properties {@code seq} / {@code seq-epoch}; the test reads what lands in Kafka. Each test ends with a probe
 * (a higher sequence from the same connection): the gateway keeps a device's order, so once the probe is in Kafka
 * every copy before it has been decided.
 */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class DedupTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static LocalServers servers;
    private static Mqtt5BlockingClient first;
    private static Mqtt5BlockingClient second;
    private static KafkaRecords telemetry;
    private static RedisCommands redis;

    @BeforeAll
    static void connect() {
        servers = SharedServers.get();
        first = device();
        second = device();
        telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
        redis = new RedisCommands(servers.redis.port);
    }

    @AfterAll
    static void disconnect() {
        first.disconnect();
        second.disconnect();
        telemetry.close();
        redis.close();
    }

    private static Mqtt5BlockingClient device() {
        Mqtt5BlockingClient c = MqttClient.builder().useMqttVersion5().identifier("dedup-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildBlocking();
        c.connect();
        return c;
    }

    /** QoS 1, returns once the broker acknowledged it; {@code epoch} null: no epoch property. */
    private static void publish(Mqtt5BlockingClient client, String id, Object seq, Long epoch, String payload) {
        var props = client.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload(payload.getBytes(StandardCharsets.UTF_8)).userProperties().add("seq", seq.toString());
        if (epoch != null) {
            props = props.add("seq-epoch", epoch.toString());
        }
        props.applyUserProperties().send();
    }

    /** Every record of {@code id} once the probe (payload "probe") is in Kafka. */
    private static List<ConsumerRecord<String, byte[]>> untilProbe(String id) {
        telemetry.await(r -> r.key().equals(id) && payload(r).equals("probe"), 1, TIMEOUT);
        return telemetry.upToEnd(r -> r.key().equals(id));
    }

    private static String payload(ConsumerRecord<String, byte[]> r) {
        try {
            return DeviceMessage.parseFrom(r.value()).getPayload().toStringUtf8();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static List<String> payloads(List<ConsumerRecord<String, byte[]>> records) {
        return records.stream().map(DedupTest::payload).toList();
    }

    private static double metric(String series) {
        double v = PrometheusText.sample(given().get("/q/metrics").asString(), series);
        return Double.isNaN(v) ? 0 : v;
    }

    @Test
    void dropsAResendOfTheSameSequenceFromAnotherConnection() {
        String id = Devices.uniqueId("dup");
        double before = metric("gateway_ingest_duplicates_dropped_total");
        publish(first, id, 1, null, "one");
        publish(second, id, 1, null, "one-again");
        publish(first, id, 1, null, "one-third-time");
        publish(first, id, 2, null, "probe");
        assertEquals(List.of("one", "probe"), payloads(untilProbe(id)));
        assertTrue(metric("gateway_ingest_duplicates_dropped_total") >= before + 2, "duplicates counted");
    }

    @Test
    void carriesSequenceAndEpochInTheEnvelopeAndHeaders() throws Exception {
        String id = Devices.uniqueId("seqhdr");
        publish(first, id, "18446744073709551615", 7L, "probe");
        ConsumerRecord<String, byte[]> r = untilProbe(id).get(0);
        DeviceMessage m = DeviceMessage.parseFrom(r.value());
        assertEquals(-1L, m.getSequence(), "2^64 - 1 as an unsigned 64-bit value");
        assertEquals(7L, m.getSequenceEpoch());
        assertEquals("18446744073709551615", KafkaRecords.header(r, "sequence"));
        assertEquals("7", KafkaRecords.header(r, "sequence-epoch"));
        assertNull(KafkaRecords.header(r, "dedup"), "checked: no mark");
    }

    @Test
    void acceptsSequenceOneAgainInANewEpoch() {
        String id = Devices.uniqueId("epoch");
        publish(first, id, 1, 1L, "boot1-1");
        publish(first, id, 2, 1L, "boot1-2");
        publish(first, id, 1, 2L, "boot2-1");
        publish(first, id, 1, 2L, "boot2-1-again");
        publish(first, id, 2, 1L, "boot1-2-again");
        publish(first, id, 2, 2L, "probe");
        assertEquals(List.of("boot1-1", "boot1-2", "boot2-1", "probe"), payloads(untilProbe(id)));
    }

    @Test
    void acceptsLateMessagesWithinTheWindowOnceEach() {
        String id = Devices.uniqueId("late");
        List<String> expected = new ArrayList<>();
        for (int s = 100; s < 110; s++) {
            publish(first, id, s, null, "s" + s);
            expected.add("s" + s);
        }
        for (int s = 10; s < 100; s += 10) { // late, within the window of 4096
            publish(second, id, s, null, "s" + s);
            expected.add("s" + s);
        }
        for (int s = 10; s < 110; s += 5) { // all of them again, and some never seen
            publish(first, id, s, null, "again" + s);
            if (s % 10 == 5 && s < 100) {
                expected.add("again" + s);
            }
        }
        publish(first, id, 110, null, "probe");
        expected.add("probe");
        assertEquals(expected, payloads(untilProbe(id)));
    }

    @Test
    void writesAMessageOlderThanTheWindowMarkedBeyondWindow() {
        String id = Devices.uniqueId("old");
        publish(first, id, 10_000, null, "new");
        publish(first, id, 10_000 - 4096, null, "beyond"); // H - W: no longer remembered
        publish(first, id, 10_000 - 4095, null, "oldest-in-window");
        publish(first, id, 10_001, null, "probe");
        List<ConsumerRecord<String, byte[]>> records = untilProbe(id);
        assertEquals(List.of("new", "beyond", "oldest-in-window", "probe"), payloads(records));
        assertEquals("beyond-window", KafkaRecords.header(records.get(1), "dedup"));
        assertNull(KafkaRecords.header(records.get(2), "dedup"));
    }

    @Test
    void leavesMessagesWithoutASequenceAloneAndInOrderWithNumberedOnes() {
        String id = Devices.uniqueId("plain");
        first.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload("plain".getBytes(StandardCharsets.UTF_8)).send();
        first.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload("plain".getBytes(StandardCharsets.UTF_8)).send();
        assertEquals(2, telemetry.await(r -> r.key().equals(id), 2, TIMEOUT).size(), "not checked: both written");
        assertEquals(0L, redis.call("EXISTS", "dgw:{" + id + "}:dedup:0"), "no dedup state for unnumbered traffic");
        // mixed: the unnumbered messages stay in the device's order behind numbered ones
        for (int i = 0; i < 50; i++) {
            publish(first, id, i, null, "n" + i);
            first.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                    .payload(("u" + i).getBytes(StandardCharsets.UTF_8)).send();
        }
        publish(first, id, 50, null, "probe");
        List<String> expected = new ArrayList<>(List.of("plain", "plain"));
        for (int i = 0; i < 50; i++) {
            expected.add("n" + i);
            expected.add("u" + i);
        }
        expected.add("probe");
        assertEquals(expected, payloads(untilProbe(id)));
    }

    @Test
    void treatsAnInvalidSequenceAsUnnumbered() {
        String id = Devices.uniqueId("badseq");
        double before = metric("gateway_dedup_invalid_sequence_total");
        publish(first, id, "-1", null, "minus");
        publish(first, id, "18446744073709551616", null, "too-big");
        publish(first, id, "18446744073709551616", null, "too-big");
        publish(first, id, 1, null, "probe");
        List<ConsumerRecord<String, byte[]>> records = untilProbe(id);
        assertEquals(List.of("minus", "too-big", "too-big", "probe"), payloads(records));
        assertNull(KafkaRecords.header(records.get(0), "sequence"));
        assertEquals(before + 3, metric("gateway_dedup_invalid_sequence_total"));
    }

    /** A claim left by a gateway process that is gone (no owner key), as a kill -9 between claim and commit leaves. */
    private static void goneOwnersClaim(String id, long seq) {
        redis.call("HSET", "dgw:{" + id + "}:dedup:0", "hh", "0", "hl", Long.toString(seq), "w", "4096",
                "p" + seq, "dead0000feed0001|" + (System.currentTimeMillis() - 1_000) + "|1");
    }

    @Test
    void dropsTheRedeliveryOfAGoneOwnersClaimWhenItsRecordIsAlreadyInKafka() throws Exception {
        String id = Devices.uniqueId("gone");
        goneOwnersClaim(id, 5);
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, servers.kafka.bootstrapServers()),
                new StringSerializer(), new ByteArraySerializer())) {
            // what the dead owner wrote before it died (the gateway's headers)
            ProducerRecord<String, byte[]> record = new ProducerRecord<>("iot.telemetry", id,
                    DeviceMessage.newBuilder().setDeviceId(id).setPayload(com.google.protobuf.ByteString
                            .copyFromUtf8("written-by-the-dead-owner")).setSequence(5).build().toByteArray());
            record.headers().add("device-id", id.getBytes(StandardCharsets.UTF_8));
            record.headers().add("sequence", "5".getBytes(StandardCharsets.UTF_8));
            producer.send(record).get();
        }
        double found = metric("gateway_dedup_lookups_total{result=\"found\"}");
        publish(first, id, 5, null, "redelivered");
        publish(first, id, 6, null, "probe");
        assertEquals(List.of("written-by-the-dead-owner", "probe"), payloads(untilProbe(id)));
        assertEquals(found + 1, metric("gateway_dedup_lookups_total{result=\"found\"}"));
    }

    @Test
    void writesTheRedeliveryOfAGoneOwnersClaimWhoseRecordNeverReachedKafka() {
        String id = Devices.uniqueId("gone");
        goneOwnersClaim(id, 5);
        publish(first, id, 5, null, "redelivered");
        publish(second, id, 5, null, "resent");
        publish(first, id, 6, null, "probe");
        assertEquals(List.of("redelivered", "probe"), payloads(untilProbe(id)));
    }

    @Test
    void holdsACopyWhileALiveGatewayWritesItAndDropsItOnceThatOneCommits() {
        String id = Devices.uniqueId("busy");
        String owner = "live0000feed0002";
        redis.call("SET", "dgw:{dedup-owners}:" + owner, "another-gateway", "PX", "60000");
        redis.call("HSET", "dgw:{" + id + "}:dedup:0", "hh", "0", "hl", "5", "w", "4096",
                "p5", owner + "|" + System.currentTimeMillis() + "|1");
        publish(first, id, 5, null, "copy");
        publish(first, id, 6, null, "probe");
        // held: neither the copy nor what the device sent after it leaves while the other gateway's claim stands
        Awaitility.await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(5))
                .until(() -> telemetry.drain(r -> r.key().equals(id)).isEmpty());
        // the other gateway commits it (what its COMMIT does): the held copy is a duplicate
        redis.call("HDEL", "dgw:{" + id + "}:dedup:0", "p5");
        redis.call("SETBIT", "dgw:{" + id + "}:dedup:0:committed", "5", "1");
        assertEquals(List.of("probe"), payloads(untilProbe(id)));
        redis.call("DEL", "dgw:{dedup-owners}:" + owner);
    }
}
