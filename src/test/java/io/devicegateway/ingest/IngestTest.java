package io.devicegateway.ingest;

import static io.devicegateway.testing.KafkaRecords.header;
import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.containsString;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.google.protobuf.InvalidProtocolBufferException;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.PrometheusText;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.MessageKind;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** Black-box ingest: a real device client publishes to Mosquitto, the test reads what lands in Kafka. */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class IngestTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static LocalServers servers;
    private static Mqtt3BlockingClient device;
    private static KafkaRecords telemetry;
    private static KafkaRecords events;
    private static KafkaRecords deadLetters;

    @BeforeAll
    static void connect() {
        servers = SharedServers.get();
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
    void writesEachDevicesMessagesKeyedByDeviceInTheEnvelope() throws Exception {
        List<String> ids = List.of(Devices.uniqueId("car"), Devices.uniqueId("car"), Devices.uniqueId("sign"));
        for (String id : ids) {
            Devices.publish(device, "devices/" + id + "/telemetry/gps", ("pos-" + id).getBytes(StandardCharsets.UTF_8), 1);
        }
        List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> ids.contains(r.key()), 3, TIMEOUT);
        assertEquals(3, records.size());
        String instance = given().get("/q/health/ready").path("checks.find { it.name == 'mqtt' }.data.instance");
        for (ConsumerRecord<String, byte[]> record : records) {
            DeviceMessage message = DeviceMessage.parseFrom(record.value());
            assertEquals(record.key(), message.getDeviceId());
            assertEquals(MessageKind.TELEMETRY, message.getKind());
            assertEquals("gps", message.getStream());
            assertEquals(1, message.getQos());
            assertEquals(instance, message.getGatewayInstance());
            assertEquals("devices/" + record.key() + "/telemetry/gps", message.getMqttTopic());
            assertTrue(message.getReceivedAtMs() > 0 && message.getReceivedAtMs() <= System.currentTimeMillis());
            assertArrayEquals(("pos-" + record.key()).getBytes(StandardCharsets.UTF_8), message.getPayload().toByteArray());
            assertEquals(record.key(), header(record, "device-id"));
            assertEquals(message.getMqttTopic(), header(record, "mqtt-topic"));
            assertEquals("telemetry", header(record, "kind"));
        }
    }

    @Test
    void writesEventsToTheEventsTopic() throws Exception {
        String id = Devices.uniqueId("door");
        byte[] binary = { 0, (byte) 0xff, 0x10, (byte) 0x80 };
        Devices.publish(device, "devices/" + id + "/events/opened", binary, 0);
        ConsumerRecord<String, byte[]> record = events.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        DeviceMessage message = DeviceMessage.parseFrom(record.value());
        assertEquals(MessageKind.EVENT, message.getKind());
        assertEquals("opened", message.getStream());
        assertEquals(0, message.getQos());
        assertArrayEquals(binary, message.getPayload().toByteArray(), "payload bytes unchanged");
    }

    @Test
    void keepsEachDevicesOrder() throws Exception {
        List<String> ids = List.of(Devices.uniqueId("ord"), Devices.uniqueId("ord"), Devices.uniqueId("ord"));
        int perDevice = 300;
        for (int i = 0; i < perDevice; i++) {
            for (String id : ids) {
                Devices.publish(device, "devices/" + id + "/telemetry", Integer.toString(i).getBytes(StandardCharsets.UTF_8), 1);
            }
        }
        List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> ids.contains(r.key()), 3 * perDevice, TIMEOUT);
        for (String id : ids) {
            List<Integer> seq = new ArrayList<>();
            for (ConsumerRecord<String, byte[]> r : records) {
                if (r.key().equals(id)) {
                    seq.add(Integer.parseInt(DeviceMessage.parseFrom(r.value()).getPayload().toStringUtf8()));
                }
            }
            List<Integer> expected = new ArrayList<>();
            for (int i = 0; i < perDevice; i++) {
                expected.add(i);
            }
            assertEquals(expected, seq, "order of " + id);
        }
    }

    @Test
    void deadLettersATopicOutsideTheGrammar() throws Exception {
        String id = Devices.uniqueId("g");
        // matches the subscription filter but has an empty stream level
        String topic = "devices/" + id + "/telemetry//x";
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter(topic, "x".getBytes());
        assertEquals("invalid-stream", header(record, "reason"));
        assertArrayEquals("x".getBytes(), DeviceMessage.parseFrom(record.value()).getPayload().toByteArray());
    }

    @Test
    void deadLettersAnInvalidDeviceId() throws Exception {
        String id = "bad id " + Devices.uniqueId("x"); // space is outside [A-Za-z0-9._:-]
        String topic = "devices/" + id + "/events/alarm";
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter(topic, "y".getBytes());
        assertEquals("invalid-device-id", header(record, "reason"));
        assertEquals(topic, record.key(), "an invalid id cannot be the key: the topic is");
    }

    @Test
    void deadLettersATooLongDeviceId() throws Exception {
        String topic = "devices/" + "d".repeat(120) + Devices.uniqueId("x") + "/telemetry";
        assertEquals("invalid-device-id", header(publishAndAwaitDeadLetter(topic, "z".getBytes()), "reason"));
    }

    @Test
    void deadLettersAnEmptyPayload() throws Exception {
        String id = Devices.uniqueId("empty");
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter("devices/" + id + "/telemetry", new byte[0]);
        assertEquals("empty-payload", header(record, "reason"));
        assertEquals(id, record.key());
        assertEquals("0", header(record, "payload-size"));
    }

    @Test
    void deadLettersAnOversizePayloadWithoutItsBytes() throws Exception {
        String id = Devices.uniqueId("big");
        byte[] payload = new byte[256 * 1024 + 1];
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter("devices/" + id + "/telemetry/cam", payload);
        assertEquals("payload-too-large", header(record, "reason"));
        assertEquals(Integer.toString(payload.length), header(record, "payload-size"));
        DeviceMessage envelope = DeviceMessage.parseFrom(record.value());
        assertEquals(id, envelope.getDeviceId());
        assertEquals(0, envelope.getPayload().size());
    }

    @Test
    void deadLettersAStatusThatIsNeitherOnlineNorOffline() throws Exception {
        String id = Devices.uniqueId("st");
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter("devices/" + id + "/status", "maybe".getBytes());
        assertEquals("invalid-status", header(record, "reason"));
        assertEquals(id, record.key());
    }

    @Test
    void deadLettersAResponseWithANonNumericStatus() throws Exception {
        String id = Devices.uniqueId("resp");
        ConsumerRecord<String, byte[]> record = publishAndAwaitDeadLetter("devices/" + id + "/responses/c1/abc",
                "x".getBytes());
        assertEquals("invalid-response", header(record, "reason"));
    }

    @Test
    void acceptsAPayloadExactlyAtTheLimit() throws Exception {
        String id = Devices.uniqueId("limit");
        Devices.publish(device, "devices/" + id + "/telemetry", new byte[256 * 1024], 1);
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        assertEquals(256 * 1024, DeviceMessage.parseFrom(record.value()).getPayload().size());
    }

    @Test
    void badInputDoesNotStopGoodTraffic() throws Exception {
        String good = Devices.uniqueId("good");
        for (int i = 0; i < 20; i++) {
            Devices.publish(device, "devices/bad id " + i + "/telemetry", "x".getBytes(), 1);
            Devices.publish(device, "devices/" + good + "/telemetry", new byte[0], 1);
            Devices.publish(device, "devices/" + good + "/telemetry", ("ok" + i).getBytes(), 1);
        }
        assertEquals(20, telemetry.await(r -> good.equals(r.key()), 20, TIMEOUT).size());
        assertEquals(20, deadLetters.await(r -> good.equals(r.key()), 20, TIMEOUT).size());
    }

    @Test
    void countsDeadLettersAndIngestInMetrics() {
        String id = Devices.uniqueId("m");
        Devices.publish(device, "devices/" + id + "/telemetry", new byte[0], 1);
        deadLetters.await(r -> id.equals(r.key()), 1, TIMEOUT);
        org.awaitility.Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> given().get("/q/metrics").then()
                .statusCode(200)
                .body(containsString("gateway_ingest_dead_letters_total{reason=\"empty-payload\"}"))
                .body(containsString("gateway_ingest_messages_total{kind=\"telemetry\"}"))
                .body(containsString("gateway_ingest_latency_seconds{quantile=\"0.99\"}"))
                .body(containsString("gateway_ingest_in_flight"))
                .body(containsString("gateway_mqtt_connected 1.0")));
        double count = deadLetterCount("empty-payload");
        assertTrue(count >= 1, "empty-payload dead letters counted: " + count);
    }

    @Test
    void reportsReadyWhenConnected() {
        org.awaitility.Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> given().get("/q/health/ready").then()
                .statusCode(200).body(containsString("\"mqtt\"")));
        given().get("/q/health/live").then().statusCode(200);
    }

    private static double deadLetterCount(String reason) {
        return PrometheusText.sample(given().get("/q/metrics").asString(),
                "gateway_ingest_dead_letters_total{reason=\"" + reason + "\"}");
    }

    private static ConsumerRecord<String, byte[]> publishAndAwaitDeadLetter(String topic, byte[] payload)
            throws InvalidProtocolBufferException {
        Devices.publish(device, topic, payload, 1);
        List<ConsumerRecord<String, byte[]>> records = deadLetters.await(r -> topic.equals(header(r, "mqtt-topic")), 1,
                TIMEOUT);
        ConsumerRecord<String, byte[]> record = records.get(0);
        assertEquals(topic, DeviceMessage.parseFrom(record.value()).getMqttTopic());
        return record;
    }
}
