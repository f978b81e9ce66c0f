package io.devicegateway.platform.mqtt;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import io.vertx.core.Future;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * MQTT client ids leased from Redis, so a broker session outlives the pod that held it. Ids are
 * {@code <prefix>-<n>}; each has a lease key holding its owner (an instance id: pod name and port) with a TTL the
 * owner renews, and a set remembers every id that has a session on the broker. A new pod takes the id it held
 * before (a container restarted in place), else the lowest free one, which is usually the one a replaced pod left;
 * an id whose lease expired with nobody taking it is adopted by a live replica and drained.
 *
 * <p>All keys of one prefix share a Redis hash tag, so the scripts also run on Redis Cluster.
 */
final class ClientIdLeases {

    /** Take back my own lease, else the lowest free id. KEYS[1] known set; ARGV: lease key prefix, owner, ttl, max. */
    private static final String ACQUIRE = """
            for i = 0, tonumber(ARGV[4]) - 1 do
              if redis.call('GET', ARGV[1] .. i) == ARGV[2] then
                redis.call('PEXPIRE', ARGV[1] .. i, ARGV[3])
                redis.call('SADD', KEYS[1], i)
                return i
              end
            end
            for i = 0, tonumber(ARGV[4]) - 1 do
              if redis.call('SET', ARGV[1] .. i, ARGV[2], 'NX', 'PX', ARGV[3]) then
                redis.call('SADD', KEYS[1], i)
                return i
              end
            end
            return -1
            """;

    /** 1 renewed, 2 had expired and was taken back, 0 someone else holds it. KEYS: lease, known; ARGV: owner, ttl, n. */
    private static final String RENEW = """
            local cur = redis.call('GET', KEYS[1])
            if cur == ARGV[1] then
              redis.call('PEXPIRE', KEYS[1], ARGV[2])
              redis.call('SADD', KEYS[2], ARGV[3])
              return 1
            end
            if not cur then
              redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
              redis.call('SADD', KEYS[2], ARGV[3])
              return 2
            end
            return 0
            """;

    /** Releases a lease I hold; ARGV[3] = 1 also forgets the id (its session is gone). KEYS: lease, known. */
    private static final String RELEASE = """
            if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
            if ARGV[3] == '1' and not redis.call('GET', KEYS[1]) then redis.call('SREM', KEYS[2], ARGV[2]) end
            return 1
            """;

    /** Ends an adoption: drops my adoption claim; ARGV[3] = 1 also forgets the id unless someone leased it. */
    private static final String END_ADOPTION = """
            if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
            if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
            return 1
            """;

    /** Ids with a session but no lease. KEYS[1] known; ARGV[1] lease key prefix. */
    private static final String ORPHANS = """
            local out = {}
            for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
              if redis.call('EXISTS', ARGV[1] .. n) == 0 then table.insert(out, n) end
            end
            return out
            """;

    private final Redis redis;
    private final String idPrefix;
    private final String leaseKeyPrefix;
    private final String knownKey;
    private final long ttlMillis;
    private final int max;
    private final long callTimeoutMillis;
    private final io.vertx.core.Vertx vertx;

    ClientIdLeases(io.vertx.core.Vertx vertx, Redis redis, String keyPrefix, String idPrefix, Duration ttl, int max) {
        this.vertx = vertx;
        this.redis = redis;
        this.idPrefix = idPrefix;
        String tag = keyPrefix + "{mqtt-ids:" + idPrefix + "}";
        this.leaseKeyPrefix = tag + ":lease:";
        this.knownKey = tag + ":known";
        this.ttlMillis = ttl.toMillis();
        this.max = max;
        this.callTimeoutMillis = Math.max(1_000, ttlMillis / 3);
    }

    String clientId(int n) {
        return idPrefix + "-" + n;
    }

    long ttlMillis() {
        return ttlMillis;
    }

    /** Leases an id for {@code owner}; fails when Redis is unreachable or every id is taken. */
    Future<Integer> acquire(String owner) {
        return call(Request.cmd(Command.EVAL).arg(ACQUIRE).arg(1).arg(knownKey).arg(leaseKeyPrefix).arg(owner)
                .arg(ttlMillis).arg(max)).compose(r -> {
                    int n = r.toInteger();
                    return n < 0 ? Future.failedFuture("all " + max + " client ids are leased "
                            + "(gateway.mqtt.max-leased-client-ids)") : Future.succeededFuture(n);
                });
    }

    /** The instance holding id {@code n}'s lease, or null. */
    Future<String> owner(int n) {
        return call(Request.cmd(Command.GET).arg(leaseKeyPrefix + n)).map(r -> r == null ? null : r.toString());
    }

    /** One adopter per id at a time: a claim separate from the lease, which a dead holder may still have. */
    Future<Boolean> claimAdoption(int n, String owner) {
        return call(Request.cmd(Command.SET).arg(adoptionKey(n)).arg(owner).arg("NX").arg("PX").arg(ttlMillis))
                .map(r -> r != null);
    }

    /**
     * One round trip for a will: claims the adoption of id {@code n} only if its lease is held by {@code diedInstance}
     * or by nobody (an adopter's own connection also leaves a will when the holder takes its session back; acting on
     * that would make the two take turns). Every millisecond counts: the broker drops new messages for the dead
     * session once its in-flight messages exceed max_queued_messages.
     */
    Future<Boolean> claimAdoptionOfDead(int n, String diedInstance, String owner) {
        return call(Request.cmd(Command.EVAL).arg("""
                local holder = redis.call('GET', KEYS[1])
                if holder and holder ~= ARGV[1] then return 0 end
                if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
                return 0
                """).arg(2).arg(leaseKeyPrefix + n).arg(adoptionKey(n)).arg(diedInstance).arg(owner).arg(ttlMillis))
                .map(r -> r.toInteger() != 0);
    }

    Future<Boolean> renewAdoption(int n, String owner) {
        return call(Request.cmd(Command.EVAL).arg("""
                if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
                return 0
                """).arg(1).arg(adoptionKey(n)).arg(owner).arg(ttlMillis)).map(r -> r.toInteger() != 0);
    }

    /** Ends an adoption; with {@code sessionGone} the id is forgotten unless an instance leased it meanwhile. */
    Future<Void> endAdoption(int n, String owner, boolean sessionGone) {
        return call(Request.cmd(Command.EVAL).arg(END_ADOPTION).arg(3).arg(adoptionKey(n)).arg(knownKey)
                .arg(leaseKeyPrefix + n).arg(owner).arg(n).arg(sessionGone ? "1" : "0")).mapEmpty();
    }

    private String adoptionKey(int n) {
        return leaseKeyPrefix.replace(":lease:", ":adopting:") + n;
    }

    /** The id number of one of these client ids, or -1 for any other client id. */
    int idNumber(String clientId) {
        String prefix = idPrefix + "-";
        if (!clientId.startsWith(prefix)) {
            return -1;
        }
        try {
            return Integer.parseInt(clientId.substring(prefix.length()));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** True while {@code owner} holds id {@code n} (renewing it, or taking it back if it had expired). */
    Future<Boolean> renew(int n, String owner) {
        return call(Request.cmd(Command.EVAL).arg(RENEW).arg(2).arg(leaseKeyPrefix + n).arg(knownKey).arg(owner)
                .arg(ttlMillis).arg(n)).map(r -> r.toInteger() != 0);
    }

    /** Gives the id up; with {@code sessionGone} it is also forgotten, since the broker holds nothing for it. */
    Future<Void> release(int n, String owner, boolean sessionGone) {
        return call(Request.cmd(Command.EVAL).arg(RELEASE).arg(2).arg(leaseKeyPrefix + n).arg(knownKey).arg(owner)
                .arg(n).arg(sessionGone ? "1" : "0")).mapEmpty();
    }

    /** Ids whose broker session may hold messages while nobody holds their lease. */
    Future<List<Integer>> orphans() {
        return call(Request.cmd(Command.EVAL).arg(ORPHANS).arg(1).arg(knownKey).arg(leaseKeyPrefix)).map(r -> {
            List<Integer> ids = new ArrayList<>();
            if (r != null) {
                for (Response item : r) {
                    ids.add(item.toInteger());
                }
            }
            return ids;
        });
    }

    /** Every call is bounded: a Redis that accepts connections and never answers must not stall the connection. */
    private Future<Response> call(Request request) {
        io.vertx.core.Promise<Response> promise = io.vertx.core.Promise.promise();
        long timer = vertx.setTimer(callTimeoutMillis, id -> promise.tryFail(
                new java.util.concurrent.TimeoutException("Redis did not answer within " + callTimeoutMillis + " ms")));
        redis.send(request).onComplete(ar -> {
            vertx.cancelTimer(timer);
            if (ar.succeeded()) {
                promise.tryComplete(ar.result());
            } else {
                promise.tryFail(ar.cause());
            }
        });
        return promise.future();
    }
}
