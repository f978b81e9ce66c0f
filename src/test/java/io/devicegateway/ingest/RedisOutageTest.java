package io.devicegateway.ingest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URL;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.v1.DeviceGatewayGrpc.DeviceGatewayBlockingStub;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/** Redis and the broker going away: ingest is unaffected, sessions and commands answer UNAVAILABLE and recover. */
@QuarkusTest
@TestProfile(RedisOutageTest.OwnServers.class)
class RedisOutageTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);

    /** Own servers: this test stops Redis and Mosquitto. */
    public static class OwnServers implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers servers;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(OwnServers.class));
        }

        @Override
        public Map<String, String> start() {
            servers = LocalServers.start("redis-outage");
            Map<String, String> config = new HashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.client-id", "dgw-test-redis-outage");
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            return config;
        }

        @Override
        public void stop() {
            servers.close();
        }
    }

    @TestHTTPResource
    URL url;

    private DeviceGatewayBlockingStub stub(ManagedChannel channel) {
        return Agents.stub(channel, Agents.OPS_TOKEN);
    }

    @Test
    void ingestKeepsWorkingSessionsAnswerUnavailableAndCatchUpWhenRedisReturns() {
        LocalServers servers = OwnServers.servers;
        String id = Devices.uniqueId("r");
        ManagedChannel channel = Agents.channel(url);
        Mqtt3BlockingClient mqtt = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            servers.redis.stop();

            Devices.publish(mqtt, "devices/" + id + "/telemetry", "during-redis-outage".getBytes(), 1);
            assertEquals(1, telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).size(), "ingest unaffected");

            GetSessionRequest get = GetSessionRequest.newBuilder().setDeviceId(id).build();
            assertEquals(Status.Code.UNAVAILABLE, assertThrows(StatusRuntimeException.class,
                    () -> stub(channel).getSession(get)).getStatus().getCode());
            SendEventRequest command = SendEventRequest.newBuilder().setDeviceId(id).setName("x")
                    .setPayload(ByteString.copyFromUtf8("1")).build();
            assertEquals(Status.Code.UNAVAILABLE, assertThrows(StatusRuntimeException.class,
                    () -> stub(channel).sendEvent(command)).getStatus().getCode());

            // the device comes online while Redis is down: the change is kept and written when Redis returns
            DeviceAgent device = new DeviceAgent(id, servers.mosquitto.port).connect();
            servers.redis.start(); // an empty Redis: everything it learns comes from the catch-up
            Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                    .until(() -> stub(channel).getSession(get).getOnline());
            assertTrue(stub(channel).getSession(get).getLastSeenMs() > 0);
            assertEquals(Outcome.DELIVERED, stub(channel).sendEvent(command).getOutcome());

            // and the broker dying (kill -9, so no last will marks the device offline): commands to the
            // still-online device answer UNAVAILABLE until it is back
            servers.mosquitto.kill();
            Awaitility.await().atMost(TIMEOUT).untilAsserted(() -> assertEquals(Status.Code.UNAVAILABLE,
                    assertThrows(StatusRuntimeException.class, () -> stub(channel).sendEvent(command)).getStatus()
                            .getCode()));
            servers.mosquitto.start();
            device.close();
        } finally {
            channel.shutdownNow();
        }
    }
}
