package io.devicegateway.session;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

import jakarta.inject.Singleton;
import jakarta.enterprise.event.Event;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * Device sessions in Redis. Writes are batched and pipelined: presence changes are flushed at once, telemetry
 * last-seen updates are coalesced per device and flushed every {@code gateway.sessions.last-seen-flush-interval}.
 * While Redis is down, pending updates stay (coalesced per device, so memory is bounded by the number of devices)
 * and are written when it returns; reads fail fast so callers can answer UNAVAILABLE.
 */
@Singleton // no client proxy: seen() runs for every device message
public class SessionStore {

    private static final Logger LOG = Logger.getLogger(SessionStore.class);
    private static final long RETRY_MS = 1_000;

    /**
     * Applies a presence change to the device's session only if it is newer than the stored one (see README:
     * presence rules); a device that announced presence keeps its session (no idle expiry). KEYS[1] session.
     */
    static final String PRESENCE_SCRIPT = """
            local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
            if ARGV[5] == '1' and cur >= 0 then return 0 end
            if tonumber(ARGV[2]) <= cur then return 0 end
            redis.call('HSET', KEYS[1], 'online', ARGV[1], 'version', ARGV[2], 'gateway', ARGV[4], 'protocol', 'mqtt')
            if ARGV[1] == '1' then
              redis.call('HSET', KEYS[1], 'connected_at_ms', ARGV[3])
            else
              redis.call('HSET', KEYS[1], 'disconnected_at_ms', ARGV[3])
            end
            local seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen_ms') or '0')
            if tonumber(ARGV[3]) > seen then redis.call('HSET', KEYS[1], 'last_seen_ms', ARGV[3]) end
            redis.call('PERSIST', KEYS[1])
            return 1
            """;

    /**
     * The online index (global keys, their own slot), written after the session: the highest version wins, and an
     * offline is remembered for an hour as a tombstone so an older online written late cannot undo it.
     * KEYS: online, offline; ARGV: id, online 1/0, version, drop tombstones below this version.
     */
    static final String INDEX_SCRIPT = """
            local v = tonumber(ARGV[3])
            if v <= tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') then return 0 end
            if v <= tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '-1') then return 0 end
            if ARGV[2] == '1' then
              redis.call('ZADD', KEYS[1], v, ARGV[1])
              redis.call('ZREM', KEYS[2], ARGV[1])
            else
              redis.call('ZREM', KEYS[1], ARGV[1])
              redis.call('ZADD', KEYS[2], v, ARGV[1])
            end
            redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
            return 1
            """;

    /**
     * last_seen_ms = max(stored, given): replicas flush at different times. A session that never saw presence (an id
     * that only publishes, possibly invented) expires after ARGV[2] ms without traffic. KEYS[1] session.
     */
    static final String LAST_SEEN_SCRIPT = """
            local seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen_ms') or '0')
            if tonumber(ARGV[1]) > seen then redis.call('HSET', KEYS[1], 'last_seen_ms', ARGV[1]) end
            if redis.call('HEXISTS', KEYS[1], 'version') == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
            return 1
            """;

    /** How long an offline tombstone guards the online index against a late, older online (microseconds). */
    private static final long TOMBSTONE_MICROS = 3_600_000_000L;

    private final RedisCalls redis;
    private final Vertx vertx;
    private final RedisKeys keys;
    private final SessionConfig config;
    private final Event<DeviceOnline> onlineEvents;
    private final Map<String, PresenceUpdate> pendingPresence = new ConcurrentHashMap<>();
    private final Map<String, Long> pendingSeen = new ConcurrentHashMap<>();
    /** Presence changes applied to sessions whose online-index write is still to do (or failed). */
    private final Map<String, PresenceUpdate> pendingIndex = new ConcurrentHashMap<>();
    private Context context;
    private volatile boolean flushing;
    private boolean flushAgain;
    private boolean retryScheduled;
    private volatile boolean available = true;

    private final java.util.concurrent.atomic.AtomicLong online = new java.util.concurrent.atomic.AtomicLong();

    SessionStore(RedisCalls redis, Vertx vertx, RedisKeys keys, SessionConfig config, Event<DeviceOnline> onlineEvents,
            io.micrometer.core.instrument.MeterRegistry registry) {
        io.micrometer.core.instrument.Gauge.builder("gateway.sessions.online", online,
                java.util.concurrent.atomic.AtomicLong::get).description("Devices online (Redis, refreshed every 5 s)")
                .register(registry);
        this.redis = redis;
        this.vertx = vertx;
        this.keys = keys;
        this.config = config;
        this.onlineEvents = onlineEvents;
    }

    void start(@Observes StartupEvent event) {
        context = vertx.getOrCreateContext();
        flushTimer = vertx.setPeriodic(config.lastSeenFlushInterval().toMillis(),
                id -> context.runOnContext(v -> flush()));
        gaugeTimer = vertx.setPeriodic(5_000, id -> redis.send(Request.cmd(Command.ZCARD).arg(keys.online()))
                .onSuccess(count -> online.set(count.toLong())));
    }

    private long flushTimer = -1;
    private long gaugeTimer = -1;

    /**
     * On shutdown, after the MQTT drain (later priority): write what is pending while the Redis client is still
     * open, bounded to 1 s.
     */
    void stop(@Observes @jakarta.annotation.Priority(3000) io.quarkus.runtime.ShutdownEvent event) {
        // periodic work must not reach the Redis client once Quarkus has destroyed it
        vertx.cancelTimer(flushTimer);
        vertx.cancelTimer(gaugeTimer);
        if (context == null || pending() == 0) {
            return;
        }
        context.runOnContext(v -> flush());
        long deadline = System.nanoTime() + 1_000_000_000L;
        while ((pending() > 0 || flushing) && System.nanoTime() < deadline) {
            java.util.concurrent.locks.LockSupport.parkNanos(10_000_000L);
        }
    }

    /** Records that a device was heard from; no Redis round trip here. Any thread. */
    public void seen(String deviceId, long atMillis) {
        pendingSeen.merge(deviceId, atMillis, Math::max);
    }

    /** Queues a presence change and flushes soon. Any thread. */
    public void applyPresence(PresenceUpdate update) {
        pendingPresence.merge(update.deviceId(), update, PresenceUpdate::newer);
        context.runOnContext(v -> flush());
    }

    /** False after a Redis failure, until the next success. */
    public boolean available() {
        return available;
    }

    /** Updates waiting to be written (for tests and metrics). */
    public int pending() {
        return pendingPresence.size() + pendingSeen.size() + pendingIndex.size();
    }

    /** The device's session, empty if never seen; fails when Redis is unreachable. */
    public Future<Optional<SessionRecord>> get(String deviceId) {
        return redis.send(Request.cmd(Command.HGETALL).arg(keys.session(deviceId))).map(response -> {
            available = true;
            if (response == null || response.size() == 0) {
                return Optional.<SessionRecord> empty();
            }
            Map<String, String> hash = new HashMap<>();
            for (String field : response.getKeys()) {
                hash.put(field, response.get(field).toString());
            }
            return Optional.of(SessionRecord.of(deviceId, hash));
        }).onFailure(e -> available = false);
    }

    /** Number of commands queued for a device. */
    public Future<Integer> queuedCommands(String deviceId) {
        return redis.send(Request.cmd(Command.LLEN).arg(keys.queue(deviceId))).map(Response::toInteger);
    }

    private void flush() {
        if (flushing) {
            flushAgain = true;
            return;
        }
        Map<String, PresenceUpdate> presence = drain(pendingPresence);
        Map<String, Long> seen = drain(pendingSeen);
        if (presence.isEmpty() && seen.isEmpty()) {
            if (!pendingIndex.isEmpty()) {
                flushing = true;
                writeIndex();
            }
            return;
        }
        // per-device scripts only (one slot each); the online index follows in writeIndex
        List<Request> batch = new ArrayList<>(presence.size() + seen.size());
        List<String> batchKeys = new ArrayList<>(presence.size() + seen.size());
        List<PresenceUpdate> order = new ArrayList<>(presence.values());
        for (PresenceUpdate u : order) {
            batch.add(Request.cmd(Command.EVAL).arg(PRESENCE_SCRIPT).arg(1).arg(keys.session(u.deviceId()))
                    .arg(u.online() ? "1" : "0").arg(u.version()).arg(u.atMillis()).arg(u.gateway())
                    .arg(u.retained() ? "1" : "0"));
            batchKeys.add(keys.session(u.deviceId()));
        }
        long idleMillis = config.unannouncedIdleExpiry().toMillis();
        seen.forEach((device, at) -> {
            batch.add(Request.cmd(Command.EVAL).arg(LAST_SEEN_SCRIPT).arg(1).arg(keys.session(device)).arg(at)
                    .arg(idleMillis));
            batchKeys.add(keys.session(device));
        });
        flushing = true;
        redis.batch(batch, batchKeys).onComplete(result -> context.runOnContext(v -> {
            if (result.failed()) {
                flushing = false;
                if (available) {
                    LOG.warnf("Redis unavailable (%s): %d session updates kept until it returns",
                            result.cause().getMessage(), batch.size());
                }
                available = false;
                presence.values().forEach(u -> pendingPresence.merge(u.deviceId(), u, PresenceUpdate::newer));
                seen.forEach((device, at) -> pendingSeen.merge(device, at, Math::max));
                scheduleRetry();
                return;
            }
            if (!available) {
                LOG.info("Redis is back: session updates written");
            }
            available = true;
            for (int i = 0; i < order.size(); i++) {
                PresenceUpdate u = order.get(i);
                if (result.result().get(i).toInteger() == 1) {
                    pendingIndex.merge(u.deviceId(), u, (a, b) -> a.version() >= b.version() ? a : b);
                    if (u.online()) {
                        onlineEvents.fire(new DeviceOnline(u.deviceId()));
                    }
                }
            }
            writeIndex();
        }));
    }

    /** The online index (its own slot), after the sessions; failed writes are kept and retried. On the context. */
    private void writeIndex() {
        Map<String, PresenceUpdate> index = drain(pendingIndex);
        if (index.isEmpty()) {
            afterFlush();
            return;
        }
        long keepTombstonesFrom = System.currentTimeMillis() * 1000 - TOMBSTONE_MICROS;
        List<Request> batch = new ArrayList<>(index.size());
        List<String> batchKeys = new ArrayList<>(index.size());
        for (PresenceUpdate u : index.values()) {
            batch.add(Request.cmd(Command.EVAL).arg(INDEX_SCRIPT).arg(2).arg(keys.online()).arg(keys.offline())
                    .arg(u.deviceId()).arg(u.online() ? "1" : "0").arg(u.version()).arg(keepTombstonesFrom));
            batchKeys.add(keys.online());
        }
        redis.batch(batch, batchKeys).onComplete(result -> context.runOnContext(v -> {
            if (result.failed()) {
                index.values().forEach(u -> pendingIndex.merge(u.deviceId(), u,
                        (a, b) -> a.version() >= b.version() ? a : b));
                flushing = false;
                scheduleRetry();
                return;
            }
            afterFlush();
        }));
    }

    private void afterFlush() {
        flushing = false;
        if (flushAgain || !pendingPresence.isEmpty()) {
            flushAgain = false;
            flush();
        }
    }

    private void scheduleRetry() {
        if (!retryScheduled) {
            retryScheduled = true;
            vertx.setTimer(RETRY_MS, id -> context.runOnContext(v -> {
                retryScheduled = false;
                flush();
            }));
        }
    }

    private static <V> Map<String, V> drain(Map<String, V> pending) {
        Map<String, V> taken = new HashMap<>();
        for (Map.Entry<String, V> e : pending.entrySet()) {
            if (pending.remove(e.getKey(), e.getValue())) {
                taken.put(e.getKey(), e.getValue());
            }
        }
        return taken;
    }
}
