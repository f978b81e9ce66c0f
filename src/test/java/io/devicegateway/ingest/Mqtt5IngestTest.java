package io.devicegateway.ingest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.stream.StreamSupport;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt5.Mqtt5BlockingClient;
import com.hivemq.client.mqtt.mqtt5.message.publish.Mqtt5PayloadFormatIndicator;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** MQTT 5 devices: their message properties reach Kafka (README: MQTT 5 mapping). */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class Mqtt5IngestTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static Mqtt5BlockingClient device;
    private static KafkaRecords telemetry;

    @BeforeAll
    static void connect() {
        LocalServers servers = SharedServers.get();
        device = MqttClient.builder().useMqttVersion5().identifier("v5-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildBlocking();
        device.connect();
        telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
    }

    @AfterAll
    static void disconnect() {
        device.disconnect();
        telemetry.close();
    }

    @Test
    void userPropertiesBecomeHeadersAndContentTypeFillsTheEnvelope() throws Exception {
        String id = Devices.uniqueId("v5");
        device.publishWith().topic("devices/" + id + "/telemetry/temp").qos(MqttQos.AT_LEAST_ONCE)
                .payload("{\"c\":21.5}".getBytes(StandardCharsets.UTF_8))
                .contentType("application/json")
                .payloadFormatIndicator(Mqtt5PayloadFormatIndicator.UTF_8)
                .userProperties().add("seq", "7").add("unit", "C").add("unit", "F")
                // a device property named like a gateway header stays apart from it
                .add("device-id", "forged").applyUserProperties()
                .send();
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> r.key().equals(id), 1, TIMEOUT).get(0);
        DeviceMessage message = DeviceMessage.parseFrom(record.value());
        assertEquals("application/json", message.getContentType());
        assertTrue(message.getPayloadUtf8());
        assertEquals("application/json", KafkaRecords.header(record, "content-type"));
        assertEquals("utf-8", KafkaRecords.header(record, "payload-format"));
        assertEquals("7", KafkaRecords.header(record, "mqtt-user-seq"));
        assertEquals(List.of("C", "F"), StreamSupport.stream(record.headers().headers("mqtt-user-unit").spliterator(),
                false).map(h -> new String(h.value(), StandardCharsets.UTF_8)).toList(), "order and repeats kept");
        assertEquals(id, KafkaRecords.header(record, "device-id"));
        assertEquals("forged", KafkaRecords.header(record, "mqtt-user-device-id"));
        assertEquals("{\"c\":21.5}", message.getPayload().toStringUtf8());
    }

    @Test
    void userPropertiesReachKafkaWhenTheyAreTheOnlyProperties() throws Exception {
        String id = Devices.uniqueId("v5");
        device.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload(new byte[] { 1 }).userProperties().add("site", "north").applyUserProperties().send();
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> r.key().equals(id), 1, TIMEOUT).get(0);
        assertEquals("north", KafkaRecords.header(record, "mqtt-user-site"));
    }

    @Test
    void aMessageWithoutPropertiesAddsNoHeaders() throws Exception {
        String id = Devices.uniqueId("v5");
        device.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload(new byte[] { 1, 2, 3 }).send();
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> r.key().equals(id), 1, TIMEOUT).get(0);
        DeviceMessage message = DeviceMessage.parseFrom(record.value());
        assertEquals("", message.getContentType());
        assertFalse(message.getPayloadUtf8());
        for (var header : record.headers()) {
            assertFalse(header.key().startsWith("mqtt-user-") || header.key().equals("content-type"), header.key());
        }
    }
}
