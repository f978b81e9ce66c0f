package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URL;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.testing.TcpBlackHole;
import io.devicegateway.v1.DeviceGatewayGrpc.DeviceGatewayBlockingStub;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.SendEventRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * A Redis that accepts connections and never answers (a TCP black hole in front of a real Redis): session calls
 * answer UNAVAILABLE within {@code quarkus.redis.timeout}, ingest keeps flowing, device responses are acknowledged
 * to the broker without waiting for Redis, and everything catches up once Redis answers again.
 */
@QuarkusTest
@TestProfile(RedisStallTest.StalledRedis.class)
class RedisStallTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static final long REDIS_TIMEOUT_MS = 1_000;

    /** Shared Kafka and Mosquitto; an own Redis behind the black hole. */
    public static class StalledRedis implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers.Redis redis;
        static TcpBlackHole hole;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(StalledRedis.class));
        }

        @Override
        public Map<String, String> start() {
            LocalServers shared = SharedServers.get();
            redis = new LocalServers.Redis(Paths.get("target", "servers", "redis-stall-" + UUID.randomUUID())
                    .toAbsolutePath());
            redis.start();
            try {
                hole = new TcpBlackHole(redis.port);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            Map<String, String> config = new HashMap<>(shared.gatewayConfig());
            config.put("quarkus.redis.hosts", "redis://127.0.0.1:" + hole.port());
            config.put("quarkus.redis.timeout", REDIS_TIMEOUT_MS + "ms");
            config.put("quarkus.redis.tcp.read-idle-timeout", "3s");
            config.put("gateway.mqtt.client-id", "dgw-test-redis-stall");
            // a window of 2: a response whose acknowledgement waited for Redis would stop everything behind it
            config.put("gateway.mqtt.receive-maximum", "2");
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            return config;
        }

        @Override
        public void stop() {
            hole.close();
            redis.stop();
        }
    }

    @TestHTTPResource
    URL url;

    @Test
    void aRedisThatNeverAnswersGivesUnavailableInTimeWhileIngestAndResponsesFlow() {
        LocalServers shared = SharedServers.get();
        String id = Devices.uniqueId("stall");
        GetSessionRequest get = GetSessionRequest.newBuilder().setDeviceId(id).build();
        SendEventRequest command = SendEventRequest.newBuilder().setDeviceId(id).setName("x")
                .setPayload(ByteString.copyFromUtf8("1")).build();
        ManagedChannel channel = Agents.channel(url);
        // a fresh stub per call: a stub's deadline counts from its creation
        java.util.function.Supplier<DeviceGatewayBlockingStub> stub = () -> Agents.stub(channel, Agents.OPS_TOKEN);
        DeviceAgent device = new DeviceAgent(id, shared.mosquitto.port).connect();
        Mqtt3BlockingClient mqtt = Devices.connect(shared.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(shared.kafka.bootstrapServers(), "iot.telemetry")) {
            Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                    .until(() -> stub.get().getSession(get).getOnline());

            StalledRedis.hole.blackHole(true);

            assertUnavailableInTime(() -> stub.get().getSession(get));
            assertUnavailableInTime(() -> stub.get().sendEvent(command));

            // responses (nobody waits for them) first, then telemetry behind them in the window of 2
            for (int i = 0; i < 4; i++) {
                Devices.publish(mqtt, "devices/" + id + "/responses/stalled-" + i, "ok".getBytes(), 1);
            }
            Devices.publish(mqtt, "devices/" + id + "/telemetry", "during-stall".getBytes(), 1);
            assertEquals(1, telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).size(),
                    "ingest flows, and acknowledging responses does not wait for Redis");
            device.goOffline();

            StalledRedis.hole.blackHole(false);

            // stuck connections are dropped, pending session updates are written: the device is seen offline
            Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                    .until(() -> !stub.get().getSession(get).getOnline());
            assertTrue(stub.get().getSession(get).getLastSeenMs() > 0);
            assertEquals(Status.Code.FAILED_PRECONDITION, assertThrows(StatusRuntimeException.class,
                    () -> stub.get().sendEvent(command)).getStatus().getCode(), "Redis answers again: offline, no TTL");
        } finally {
            StalledRedis.hole.blackHole(false);
            mqtt.disconnect();
            device.close();
            channel.shutdownNow();
        }
    }

    private static void assertUnavailableInTime(Runnable call) {
        long start = System.nanoTime();
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, call::run);
        long millis = (System.nanoTime() - start) / 1_000_000;
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
        assertTrue(e.getStatus().getDescription().contains("did not answer within " + REDIS_TIMEOUT_MS + " ms"),
                e.getStatus().getDescription());
        assertTrue(millis < REDIS_TIMEOUT_MS + 1_500, "answered after " + millis + " ms");
        assertFalse(millis < REDIS_TIMEOUT_MS - 100, "answered before the timeout: Redis was not stalled");
    }
}
