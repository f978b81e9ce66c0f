package io.devicegateway.function;

import static io.devicegateway.testing.KafkaRecords.header;
import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.function.telematics.TelematicsFrame;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.PrometheusText;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Device functions on the ingest channels, black box: a real device publishes to Mosquitto, the test reads Kafka. The
 * functions are the shipped telematics decoder (enabled in the test profile) and {@link TestFunctions}.
 */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class DeviceFunctionsTest {

    static final Duration TIMEOUT = Duration.ofSeconds(30);
    static final TelematicsFrame FRAME = new TelematicsFrame(7, 1_700_000_000_000L, 481_371_790, 115_753_820, 8_725);
    private static Mqtt3BlockingClient device;
    private static KafkaRecords telemetry;
    private static KafkaRecords events;
    private static KafkaRecords deadLetters;

    @BeforeAll
    static void connect() {
        LocalServers servers = SharedServers.get();
        device = Devices.connect(servers.mosquitto.port);
        telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
        events = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.events");
        deadLetters = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq");
    }

    @AfterAll
    static void disconnect() {
        device.disconnect();
        telemetry.close();
        events.close();
        deadLetters.close();
    }

    @Test
    void decodesATelematicsFrameIntoJsonWithContentTypeAndSequence() throws Exception {
        String id = Devices.uniqueId("truck");
        Devices.publish(device, "devices/" + id + "/telemetry/telematics/position", FRAME.encode(), 1);
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        DeviceMessage message = DeviceMessage.parseFrom(record.value());
        assertEquals(FRAME.toJson(), message.getPayload().toStringUtf8());
        assertEquals("application/json", message.getContentType());
        assertTrue(message.hasSequence());
        assertEquals(7, message.getSequence());
        assertEquals("application/json", header(record, "content-type"));
        assertEquals("7", header(record, "sequence"));
        assertEquals("telematics/position", message.getStream());
    }

    @Test
    void deadLettersMalformedFramesWithTheirReasonAndKeepsTheStreamGoing() throws Exception {
        String id = Devices.uniqueId("truck");
        String topic = "devices/" + id + "/telemetry/telematics/position";
        byte[] badMagic = FRAME.encode();
        badMagic[0] = 0x00;
        Devices.publish(device, topic, "not a frame".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, badMagic, 1);
        Devices.publish(device, topic, FRAME.encode(), 1);
        List<ConsumerRecord<String, byte[]>> dead = deadLetters.await(r -> id.equals(r.key()), 2, TIMEOUT);
        assertEquals(List.of("telematics-wrong-length", "telematics-bad-magic"),
                dead.stream().map(r -> header(r, "reason")).toList());
        for (ConsumerRecord<String, byte[]> r : dead) {
            assertEquals("telematics-decoder", header(r, "function"));
        }
        assertEquals("not a frame", DeviceMessage.parseFrom(dead.get(0).value()).getPayload().toStringUtf8(),
                "the dead letter carries the device's original payload");
        ConsumerRecord<String, byte[]> good = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        assertEquals(FRAME.toJson(), DeviceMessage.parseFrom(good.value()).getPayload().toStringUtf8());
        Awaitility.await().atMost(TIMEOUT).until(() -> deadLetterCount("telematics-bad-magic") >= 1);
    }

    @Test
    void removesDuplicateFramesByTheSequenceTheDecoderSets() throws Exception {
        String id = Devices.uniqueId("truck");
        String topic = "devices/" + id + "/telemetry/telematics/position";
        TelematicsFrame next = new TelematicsFrame(8, FRAME.timestampMs() + 1000, FRAME.latE7(), FRAME.lonE7(), 0);
        Devices.publish(device, topic, FRAME.encode(), 1);
        Devices.publish(device, topic, FRAME.encode(), 1); // the device resends: same sequence
        Devices.publish(device, topic, next.encode(), 1);
        telemetry.await(r -> id.equals(r.key()) && "8".equals(header(r, "sequence")), 1, TIMEOUT);
        List<ConsumerRecord<String, byte[]>> all = telemetry.upToEnd(r -> id.equals(r.key()));
        assertEquals(List.of("7", "8"), all.stream().map(r -> header(r, "sequence")).toList());
    }

    @Test
    void deadLettersFunctionFailedWhenAFunctionThrowsAndLaterMessagesStillFlow() throws Exception {
        String id = Devices.uniqueId("thrower");
        String topic = "devices/" + id + "/telemetry/test/throws";
        Devices.publish(device, topic, "boom-1".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, "fine-2".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, "boom-3".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, "fine-4".getBytes(StandardCharsets.UTF_8), 1);
        List<ConsumerRecord<String, byte[]>> dead = deadLetters.await(r -> id.equals(r.key()), 2, TIMEOUT);
        for (ConsumerRecord<String, byte[]> r : dead) {
            assertEquals("function-failed", header(r, "reason"));
            assertEquals("test-throws", header(r, "function"));
            assertEquals("java.lang.IllegalStateException", header(r, "error"));
        }
        assertEquals(List.of("boom-1", "boom-3"), payloads(dead));
        assertEquals(List.of("fine-2", "fine-4"), payloads(telemetry.await(r -> id.equals(r.key()), 2, TIMEOUT)));
        Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> assertTrue(
                sample("gateway_functions_failed_total{function=\"test-throws\"}") >= 2));
    }

    @Test
    void nacksWhatEscapesTheFunctionsAsProcessingFailedAndTheStreamGoesOn() throws Exception {
        String id = Devices.uniqueId("vmerr");
        String topic = "devices/" + id + "/telemetry/test/throws";
        Devices.publish(device, topic, "vm-error".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, "after".getBytes(StandardCharsets.UTF_8), 1);
        ConsumerRecord<String, byte[]> dead = deadLetters.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        assertEquals("processing-failed", header(dead, "reason"));
        assertEquals("java.lang.InternalError", header(dead, "error"));
        assertEquals(List.of("after"), payloads(telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT)));
    }

    @Test
    void dropsAndCountsWhatAFilteringFunctionFilters() throws Exception {
        String id = Devices.uniqueId("filtered");
        String topic = "devices/" + id + "/telemetry/test/filter";
        double before = sample("gateway_functions_filtered_total{function=\"test-filter\"}");
        Devices.publish(device, topic, "drop".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, topic, "keep".getBytes(StandardCharsets.UTF_8), 1);
        telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT);
        assertEquals(List.of("keep"), payloads(telemetry.upToEnd(r -> id.equals(r.key()))));
        assertTrue(deadLetters.upToEnd(r -> id.equals(r.key())).isEmpty(), "a dropped message is no dead letter");
        Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> assertEquals(before + 1,
                sample("gateway_functions_filtered_total{function=\"test-filter\"}")));
        // acknowledged like any other: nothing stays unacknowledged on the connection
        Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> assertEquals(0.0, sample("gateway_mqtt_unacknowledged")));
    }

    @Test
    void runsFunctionsInTheDeclaredOrderWithTiesBrokenByName() throws Exception {
        String id = Devices.uniqueId("compose");
        Devices.publish(device, "devices/" + id + "/telemetry/test/compose/x", "x".getBytes(StandardCharsets.UTF_8), 1);
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        // a (order 10), then b and c (order 20, by name)
        assertEquals("xabc", DeviceMessage.parseFrom(record.value()).getPayload().toStringUtf8());
        List<String> trace = new ArrayList<>();
        for (Header h : record.headers().headers("trace")) {
            trace.add(new String(h.value(), StandardCharsets.UTF_8));
        }
        assertEquals(List.of("a", "b", "c"), trace);
    }

    @Test
    void appliesAFunctionOnlyToTheKindsAndStreamsItDeclares() throws Exception {
        String id = Devices.uniqueId("kinds");
        Devices.publish(device, "devices/" + id + "/telemetry/test/kind", "t".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, "devices/" + id + "/events/test/kind", "e".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, "devices/" + id + "/events/test/other", "o".getBytes(StandardCharsets.UTF_8), 1);
        assertEquals(List.of("t"), payloads(telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT)));
        List<ConsumerRecord<String, byte[]>> ev = events.await(r -> id.equals(r.key()), 2, TIMEOUT);
        assertEquals(List.of("event-seen", "o"), payloads(ev));
        assertEquals("text/plain", DeviceMessage.parseFrom(ev.get(0).value()).getContentType());
        assertEquals("", DeviceMessage.parseFrom(ev.get(1).value()).getContentType());
    }

    static List<String> payloads(List<ConsumerRecord<String, byte[]>> records) throws Exception {
        List<String> out = new ArrayList<>();
        for (ConsumerRecord<String, byte[]> r : records) {
            out.add(DeviceMessage.parseFrom(r.value()).getPayload().toStringUtf8());
        }
        return out;
    }

    static double sample(String series) {
        return PrometheusText.sample(given().get("/q/metrics").asString(), series);
    }

    static double deadLetterCount(String reason) {
        return sample("gateway_ingest_dead_letters_total{reason=\"" + reason + "\"}");
    }
}
