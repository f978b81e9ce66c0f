package io.devicegateway.ingest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import jakarta.inject.Inject;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceMessage;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/** Attributes set on the channel win over their {@code gateway.ingest.*} aliases. */
@QuarkusTest
@TestProfile(ConnectorAttributesTest.ChannelAttributes.class)
class ConnectorAttributesTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    public static class ChannelAttributes implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of(
                    // a fresh broker session: a leased id could bring back an earlier run's wider subscriptions
                    "gateway.mqtt.client-id", "dgw-test-attributes-" + UUID.randomUUID(),
                    "mp.messaging.incoming.device-messages.filters", "devices/+/telemetry/narrow/#",
                    "gateway.ingest.filters", "devices/+/telemetry/#",
                    "mp.messaging.connector.device-gateway-mqtt.max-in-flight", "7",
                    "gateway.ingest.max-in-flight", "5000");
        }
    }

    @Inject
    InFlight inFlight;

    private static Mqtt3BlockingClient device;
    private static KafkaRecords telemetry;

    @BeforeAll
    static void connect() {
        LocalServers servers = SharedServers.get();
        device = Devices.connect(servers.mosquitto.port);
        telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry");
    }

    @AfterAll
    static void disconnect() {
        device.disconnect();
        telemetry.close();
    }

    @Test
    void subscribesToTheChannelsFiltersNotTheAlias() throws Exception {
        String id = Devices.uniqueId("attr");
        Devices.publish(device, "devices/" + id + "/telemetry/wide", "wide".getBytes(StandardCharsets.UTF_8), 1);
        Devices.publish(device, "devices/" + id + "/telemetry/narrow/x", "narrow".getBytes(StandardCharsets.UTF_8), 1);
        telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT);
        List<String> payloads = telemetry.upToEnd(r -> id.equals(r.key())).stream()
                .map(r -> parse(r.value()).getPayload().toStringUtf8()).toList();
        assertEquals(List.of("narrow"), payloads);
    }

    @Test
    void boundsInFlightWorkByTheConnectorLevelAttribute() {
        assertEquals(7, inFlight.maxCount());
        assertEquals(33_554_432L, inFlight.maxBytes(), "unset: the alias's default");
    }

    private static DeviceMessage parse(byte[] value) {
        try {
            return DeviceMessage.parseFrom(value);
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            throw new IllegalStateException(e);
        }
    }
}
