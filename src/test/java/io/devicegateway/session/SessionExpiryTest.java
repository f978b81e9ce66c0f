package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

import jakarta.inject.Inject;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.SharedServers;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/** Sessions of ids that only publish (never announce presence) expire after an idle time; announced ones do not. */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class SessionExpiryTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(20);

    @Inject
    Redis redis;

    @Inject
    RedisKeys keys;

    @Inject
    SessionConfig config;

    private Response call(Request request) throws Exception {
        return redis.send(request).toCompletionStage().toCompletableFuture().get(5, TimeUnit.SECONDS);
    }

    private long pttl(String deviceId) throws Exception {
        return call(Request.cmd(Command.PTTL).arg(keys.session(deviceId))).toLong();
    }

    private void publish(String deviceId) {
        Mqtt3BlockingClient mqtt = Devices.connect(SharedServers.get().mosquitto.port);
        try {
            Devices.publish(mqtt, "devices/" + deviceId + "/telemetry", "1".getBytes(), 1);
        } finally {
            mqtt.disconnect();
        }
    }

    @Test
    void anIdThatOnlyPublishesGetsASessionThatExpiresAfterTheConfiguredIdleTime() throws Exception {
        String id = Devices.uniqueId("invented");
        publish(id);
        long idle = config.unannouncedIdleExpiry().toMillis();
        long ttl = Awaitility.await().atMost(TIMEOUT).until(() -> pttl(id), t -> t > 0);
        assertTrue(ttl <= idle && ttl > idle - 60_000, "PTTL " + ttl + " ms, configured " + idle + " ms");
    }

    @Test
    void announcingPresenceMakesAPublishOnlySessionPermanent() throws Exception {
        String id = Devices.uniqueId("late-birth");
        publish(id);
        Awaitility.await().atMost(TIMEOUT).until(() -> pttl(id), t -> t > 0);
        DeviceAgent device = new DeviceAgent(id, SharedServers.get().mosquitto.port).connect();
        try {
            Awaitility.await().atMost(TIMEOUT).until(() -> pttl(id), t -> t == -1);
        } finally {
            device.close();
        }
    }

    @Test
    void aDeviceWithPresenceKeepsItsSessionWhileItPublishes() throws Exception {
        String id = Devices.uniqueId("announced");
        DeviceAgent device = new DeviceAgent(id, SharedServers.get().mosquitto.port).connect();
        try {
            Awaitility.await().atMost(TIMEOUT).until(() -> pttl(id), t -> t == -1);
            long before = lastSeen(id);
            publish(id);
            Awaitility.await().atMost(TIMEOUT).until(() -> lastSeen(id) > before);
            assertEquals(-1, pttl(id), "telemetry must not put an expiry on an announced device's session");
        } finally {
            device.close();
        }
    }

    @Test
    void anIdleUnannouncedSessionIsGoneAfterTheIdleTime() throws Exception {
        // the flush script itself, with a short idle time, on the real Redis
        String id = Devices.uniqueId("idle");
        call(Request.cmd(Command.EVAL).arg(SessionStore.LAST_SEEN_SCRIPT).arg(1).arg(keys.session(id))
                .arg(System.currentTimeMillis()).arg(300));
        assertEquals(1, call(Request.cmd(Command.EXISTS).arg(keys.session(id))).toInteger());
        Awaitility.await().atMost(TIMEOUT)
                .until(() -> call(Request.cmd(Command.EXISTS).arg(keys.session(id))).toInteger() == 0);
    }

    private long lastSeen(String id) throws Exception {
        Response r = call(Request.cmd(Command.HGET).arg(keys.session(id)).arg("last_seen_ms"));
        return r == null ? 0 : r.toLong();
    }
}
