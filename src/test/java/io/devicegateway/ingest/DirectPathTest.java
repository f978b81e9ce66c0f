package io.devicegateway.ingest;

import static io.devicegateway.testing.KafkaRecords.header;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.function.telematics.TelematicsFrame;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * {@code gateway.ingest.path=direct}: the same steps without the channels (what the benchmark compares). Telemetry,
 * dead letters, device functions and a failure all behave as on the channels.
 */
@QuarkusTest
@TestProfile(DirectPathTest.Direct.class)
class DirectPathTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    public static class Direct implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of("gateway.ingest.path", "direct");
        }
    }

    private static Mqtt3BlockingClient device;
    private static KafkaRecords telemetry;
    private static KafkaRecords deadLetters;

    @BeforeAll
    static void connect() {
        LocalServers servers = SharedServers.get();
        device = Devices.connect(servers.mosquitto.port);
        telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
        deadLetters = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq");
    }

    @AfterAll
    static void disconnect() {
        device.disconnect();
        telemetry.close();
        deadLetters.close();
    }

    @Test
    void writesTelemetryInOrderThroughTheDirectPath() throws Exception {
        String id = Devices.uniqueId("direct");
        for (int i = 0; i < 50; i++) {
            Devices.publish(device, "devices/" + id + "/telemetry/gps", Integer.toString(i).getBytes(StandardCharsets.UTF_8), 1);
        }
        List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> id.equals(r.key()), 50, TIMEOUT);
        for (int i = 0; i < 50; i++) {
            assertEquals(Integer.toString(i), DeviceMessage.parseFrom(records.get(i).value()).getPayload().toStringUtf8());
        }
        assertEquals("telemetry", header(records.get(0), "kind"));
    }

    @Test
    void deadLettersBadInputThroughTheDirectPath() {
        String id = Devices.uniqueId("direct");
        Devices.publish(device, "devices/" + id + "/telemetry", new byte[0], 1);
        assertEquals("empty-payload", header(deadLetters.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0), "reason"));
    }

    @Test
    void runsTheDeviceFunctionsOnTheDirectPathToo() throws Exception {
        String id = Devices.uniqueId("direct");
        TelematicsFrame frame = new TelematicsFrame(3, 1_700_000_000_000L, 1, 2, 3);
        Devices.publish(device, "devices/" + id + "/telemetry/telematics/position", frame.encode(), 1);
        Devices.publish(device, "devices/" + id + "/telemetry/test/throws", "boom".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, "devices/" + id + "/telemetry/test/throws", "vm-error".getBytes(StandardCharsets.UTF_8), 1);
        ConsumerRecord<String, byte[]> record = telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
        assertEquals(frame.toJson(), DeviceMessage.parseFrom(record.value()).getPayload().toStringUtf8());
        assertEquals("3", header(record, "sequence"));
        List<ConsumerRecord<String, byte[]>> dead = deadLetters.await(r -> id.equals(r.key()), 2, TIMEOUT);
        assertEquals(List.of("function-failed", "processing-failed"), dead.stream().map(r -> header(r, "reason")).toList());
    }
}
