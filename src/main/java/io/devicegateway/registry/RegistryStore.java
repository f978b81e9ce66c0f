package io.devicegateway.registry;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import jakarta.inject.Singleton;

import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.vertx.core.Future;
import io.vertx.core.json.JsonObject;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * The registry in Redis (see README: Redis keys). One hash per device, {@code dgw:{<id>}:device}, in the device's
 * Redis Cluster slot; every change of it is one script on that key. The listing index {@code dgw:{registry}:devices}
 * (one sorted set, all scores 0, read by lexicographic range: one slot, so it works on Cluster) is written by a
 * separate call: before the hash on register, after it on delete, so an index entry may name a device that does not
 * exist (skipped by listings, removed by reconciliation) but a device is never missing from the index.
 */
@Singleton
public class RegistryStore {

    /** A device as stored; {@code pending} is the sealed password the broker has not confirmed, or null. */
    record Stored(String id, JsonObject labels, boolean enabled, long createdAtMs, long rotatedAtMs, long revision,
            String secret, String pending) {

        static Stored of(String id, Map<String, String> hash) {
            if (hash.isEmpty() || !hash.containsKey("revision")) {
                return null;
            }
            return new Stored(id, new JsonObject(hash.getOrDefault("labels", "{}")), "1".equals(hash.get("enabled")),
                    parse(hash.get("created_at_ms")), parse(hash.get("rotated_at_ms")), parse(hash.get("revision")),
                    hash.get("secret"), hash.get("pending"));
        }

        private static long parse(String value) {
            try {
                return value == null ? 0 : Long.parseLong(value);
            } catch (NumberFormatException e) {
                return 0;
            }
        }
    }

    /** A change and the device after it. */
    record Change(boolean changed, Stored device) {
    }

    private static final String REGISTER = """
            if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
            redis.call('HSET', KEYS[1], 'labels', ARGV[1], 'enabled', '1', 'created_at_ms', ARGV[2],
              'rotated_at_ms', ARGV[2], 'revision', '1', 'secret', ARGV[3])
            if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'pending', ARGV[4]) end
            return 1""";
    private static final String ROTATE = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
            redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'rotated_at_ms', ARGV[2])
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'pending', ARGV[3])
            else redis.call('HDEL', KEYS[1], 'pending') end
            redis.call('HINCRBY', KEYS[1], 'revision', 1)
            return redis.call('HGETALL', KEYS[1])""";
    private static final String SET_ENABLED = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
            local changed = '0'
            if redis.call('HGET', KEYS[1], 'enabled') ~= ARGV[1] then
              redis.call('HSET', KEYS[1], 'enabled', ARGV[1])
              redis.call('HINCRBY', KEYS[1], 'revision', 1)
              changed = '1'
            end
            local all = redis.call('HGETALL', KEYS[1])
            table.insert(all, '_changed')
            table.insert(all, changed)
            return all""";
    private static final String CLEAR_PENDING = """
            if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then return redis.call('HDEL', KEYS[1], 'pending') end
            return 0""";
    private static final String RELEASE_LOCK = """
            if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
            return 0""";

    private final RedisCalls redis;
    private final RedisKeys keys;

    RegistryStore(RedisCalls redis, RedisKeys keys) {
        this.redis = redis;
        this.keys = keys;
    }

    /** False when the id is already registered. */
    Future<Boolean> register(String id, JsonObject labels, long nowMs, String secret, String pending) {
        return redis.send(Request.cmd(Command.ZADD).arg(keys.deviceIndex()).arg(0).arg(id))
                .compose(indexed -> redis.send(Request.cmd(Command.EVAL).arg(REGISTER).arg(1).arg(keys.device(id))
                        .arg(labels.encode()).arg(nowMs).arg(secret).arg(pending == null ? "" : pending)))
                .map(r -> r.toInteger() == 1);
    }

    /** Empty when the device is unknown. */
    Future<Optional<Stored>> rotate(String id, long nowMs, String secret, String pending) {
        return redis.send(Request.cmd(Command.EVAL).arg(ROTATE).arg(1).arg(keys.device(id)).arg(secret).arg(nowMs)
                .arg(pending == null ? "" : pending)).map(r -> Optional.ofNullable(Stored.of(id, map(r))));
    }

    /** Empty when the device is unknown; {@code changed} false when it already was in that state. */
    Future<Optional<Change>> setEnabled(String id, boolean enabled) {
        return redis.send(Request.cmd(Command.EVAL).arg(SET_ENABLED).arg(1).arg(keys.device(id))
                .arg(enabled ? "1" : "0")).map(r -> {
                    Map<String, String> hash = map(r);
                    boolean changed = "1".equals(hash.remove("_changed"));
                    Stored device = Stored.of(id, hash);
                    return device == null ? Optional.<Change> empty() : Optional.of(new Change(changed, device));
                });
    }

    /** False when the device was unknown. */
    Future<Boolean> delete(String id) {
        return redis.send(Request.cmd(Command.DEL).arg(keys.device(id))).compose(deleted -> redis
                .send(Request.cmd(Command.ZREM).arg(keys.deviceIndex()).arg(id)).map(removed -> deleted.toLong() > 0));
    }

    Future<Optional<Stored>> get(String id) {
        return redis.send(Request.cmd(Command.HGETALL).arg(keys.device(id)))
                .map(r -> Optional.ofNullable(Stored.of(id, map(r))));
    }

    /** The devices (null where the index names a device that does not exist), in the order of {@code ids}. */
    Future<List<Stored>> getAll(List<String> ids) {
        List<Request> requests = new ArrayList<>(ids.size());
        List<String> requestKeys = new ArrayList<>(ids.size());
        for (String id : ids) {
            requests.add(Request.cmd(Command.HGETALL).arg(keys.device(id)));
            requestKeys.add(keys.device(id));
        }
        return redis.batch(requests, requestKeys).map(responses -> {
            List<Stored> devices = new ArrayList<>(ids.size());
            for (int i = 0; i < ids.size(); i++) {
                devices.add(Stored.of(ids.get(i), map(responses.get(i))));
            }
            return devices;
        });
    }

    /**
     * Up to {@code count} indexed ids in lexicographic order, after {@code afterExclusive} (null: from
     * {@code minInclusive}) and at most {@code maxInclusive} (null: to the end).
     */
    Future<List<String>> ids(String minInclusive, String afterExclusive, String maxInclusive, int count) {
        String min = afterExclusive != null ? "(" + afterExclusive : minInclusive != null ? "[" + minInclusive : "-";
        String max = maxInclusive != null ? "[" + maxInclusive : "+";
        return redis.send(Request.cmd(Command.ZRANGEBYLEX).arg(keys.deviceIndex()).arg(min).arg(max).arg("LIMIT")
                .arg(0).arg(count)).map(r -> {
                    List<String> ids = new ArrayList<>(r.size());
                    for (Response item : r) {
                        ids.add(item.toString());
                    }
                    return ids;
                });
    }

    /** Removes index entries that name no device (checked again here, so a registration in progress is kept). */
    Future<Void> removeFromIndexIfAbsent(List<String> ids) {
        if (ids.isEmpty()) {
            return Future.succeededFuture();
        }
        return getAll(ids).compose(devices -> {
            Request zrem = Request.cmd(Command.ZREM).arg(keys.deviceIndex());
            int n = 0;
            for (int i = 0; i < ids.size(); i++) {
                if (devices.get(i) == null) {
                    zrem.arg(ids.get(i));
                    n++;
                }
            }
            return n == 0 ? Future.succeededFuture() : redis.send(zrem).mapEmpty();
        });
    }

    /** Deletes the sealed password once the broker confirmed it, unless a newer one replaced it meanwhile. */
    Future<Void> clearPending(String id, String pending) {
        return redis.send(Request.cmd(Command.EVAL).arg(CLEAR_PENDING).arg(1).arg(keys.device(id)).arg(pending))
                .mapEmpty();
    }

    Future<Boolean> tryLock(String owner, long ttlMillis) {
        return redis.send(Request.cmd(Command.SET).arg(keys.registryReconcileLock()).arg(owner).arg("NX").arg("PX")
                .arg(ttlMillis)).map(r -> r != null && "OK".equals(r.toString()));
    }

    Future<Void> unlock(String owner) {
        return redis.send(Request.cmd(Command.EVAL).arg(RELEASE_LOCK).arg(1).arg(keys.registryReconcileLock())
                .arg(owner)).mapEmpty();
    }

    private static Map<String, String> map(Response response) {
        Map<String, String> hash = new HashMap<>();
        if (response == null || response.size() == 0) {
            return hash;
        }
        for (String field : response.getKeys()) { // a RESP3 map or a flat RESP2/Lua array of pairs
            hash.put(field, response.get(field).toString());
        }
        return hash;
    }
}
