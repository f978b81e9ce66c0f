package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;

import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.QueuedCommand;
import io.vertx.core.Future;
import io.vertx.core.buffer.Buffer;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * Commands waiting in Redis for an offline device: one list per device (oldest first), a sorted set of devices
 * by earliest expiry for the sweeper, and a total counter. Every change to a device's list is one atomic Lua script
 * on that device's keys (one Redis Cluster slot), so two replicas never deliver or expire the same command twice.
 * The due index and the total live in another slot and are written by separate calls (README: what is not atomic):
 * the index may name a device too early (the sweeper then finds nothing to do and corrects it), never too late.
 */
@ApplicationScoped
public class OfflineQueue {

    /** Queues unless the device came online meanwhile (0) or was never seen (-1); 1 when queued. KEYS: session, queue. */
    static final String ENQUEUE = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
            if redis.call('HGET', KEYS[1], 'online') == '1' then return 0 end
            redis.call('RPUSH', KEYS[2], ARGV[1])
            return 1
            """;

    /** Takes the whole queue of a device, in order. KEYS: queue. */
    static final String DRAIN = """
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            redis.call('DEL', KEYS[1])
            return items
            """;

    /** Puts commands back at the head of a device's queue, keeping their order. KEYS: queue. */
    static final String REQUEUE = """
            for i = #ARGV, 1, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
            return #ARGV
            """;

    /** Removes expired commands of one device: returns {earliest remaining expiry or -1, expired...}. KEYS: queue. */
    static final String SWEEP_DEVICE = """
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            local out = {-1}
            local keep = {}
            local min = nil
            for _, item in ipairs(items) do
              local sep = string.find(item, ':', 1, true)
              local exp = tonumber(string.sub(item, 1, sep - 1))
              if exp <= tonumber(ARGV[1]) then
                table.insert(out, item)
              else
                table.insert(keep, item)
                if (not min) or exp < min then min = exp end
              end
            end
            if #out > 1 then
              redis.call('DEL', KEYS[1])
              for _, item in ipairs(keep) do redis.call('RPUSH', KEYS[1], item) end
            end
            if min then out[1] = min end
            return out
            """;

    /** The earliest expiry in a device's queue, or -1. KEYS: queue. */
    static final String EARLIEST = """
            local min = -1
            for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
              local exp = tonumber(string.sub(item, 1, string.find(item, ':', 1, true) - 1))
              if min < 0 or exp < min then min = exp end
            end
            return min
            """;

    /** Devices whose earliest expiry has passed, at most this many per sweep. */
    private static final int SWEEP_DEVICES = 100;

    private final RedisCalls redis;
    private final RedisKeys keys;

    OfflineQueue(RedisCalls redis, RedisKeys keys) {
        this.redis = redis;
        this.keys = keys;
    }

    /**
     * 1 queued, 0 the device is online, -1 never seen. The due index is lowered after the push, so a sweep that
     * read the list before it cannot leave the command unindexed.
     */
    public Future<Integer> enqueue(QueuedCommand command) {
        String device = command.getRequest().getDeviceId();
        return redis.send(Request.cmd(Command.EVAL).arg(ENQUEUE).arg(2).arg(keys.session(device))
                        .arg(keys.queue(device)).arg(item(command)))
                .map(Response::toInteger)
                .compose(result -> result != 1 ? Future.succeededFuture(result)
                        : index(device, command.getExpiresAtMs())
                                .compose(v -> redis.send(Request.cmd(Command.INCR).arg(keys.queuedTotal())))
                                .map(v -> result));
    }

    /** Takes a device's queue; its due index entry is left for the sweeper, which drops it when it finds nothing. */
    public Future<List<QueuedCommand>> drain(String deviceId) {
        return redis.send(Request.cmd(Command.EVAL).arg(DRAIN).arg(1).arg(keys.queue(deviceId)))
                .compose(items -> {
                    List<QueuedCommand> commands = commands(items);
                    return commands.isEmpty() ? Future.succeededFuture(commands)
                            : redis.send(Request.cmd(Command.DECRBY).arg(keys.queuedTotal()).arg(commands.size()))
                                    .map(v -> commands).otherwise(commands);
                });
    }

    public Future<Void> requeue(String deviceId, List<QueuedCommand> commands) {
        if (commands.isEmpty()) {
            return Future.succeededFuture();
        }
        long minExpiry = commands.stream().mapToLong(QueuedCommand::getExpiresAtMs).min().getAsLong();
        Request request = Request.cmd(Command.EVAL).arg(REQUEUE).arg(1).arg(keys.queue(deviceId));
        commands.forEach(c -> request.arg(item(c)));
        return redis.send(request).compose(v -> index(deviceId, minExpiry))
                .compose(v -> redis.send(Request.cmd(Command.INCRBY).arg(keys.queuedTotal()).arg(commands.size())))
                .mapEmpty();
    }

    /**
     * Removes and returns the expired commands of up to 100 due devices: each device's list in its own script,
     * then its index entry set to what is left, then checked again against the list (a command queued meanwhile
     * lowers it back).
     */
    public Future<List<QueuedCommand>> sweepExpired(long nowMillis) {
        return redis.send(Request.cmd(Command.ZRANGEBYSCORE).arg(keys.queueDue()).arg("-inf").arg(nowMillis)
                .arg("LIMIT").arg(0).arg(SWEEP_DEVICES)).compose(due -> {
                    List<String> devices = new ArrayList<>();
                    if (due != null) {
                        due.forEach(r -> devices.add(r.toString()));
                    }
                    if (devices.isEmpty()) {
                        return Future.succeededFuture(List.<QueuedCommand> of());
                    }
                    List<Request> sweeps = new ArrayList<>();
                    List<String> queues = new ArrayList<>();
                    for (String d : devices) {
                        sweeps.add(Request.cmd(Command.EVAL).arg(SWEEP_DEVICE).arg(1).arg(keys.queue(d)).arg(nowMillis));
                        queues.add(keys.queue(d));
                    }
                    return redis.batch(sweeps, queues).compose(swept -> {
                        List<QueuedCommand> expired = new ArrayList<>();
                        List<Request> reindex = new ArrayList<>();
                        for (int i = 0; i < devices.size(); i++) {
                            Response r = swept.get(i);
                            long min = r.get(0).toLong();
                            for (int j = 1; j < r.size(); j++) {
                                expired.add(command(r.get(j)));
                            }
                            reindex.add(min < 0 ? Request.cmd(Command.ZREM).arg(keys.queueDue()).arg(devices.get(i))
                                    : Request.cmd(Command.ZADD).arg(keys.queueDue()).arg(min).arg(devices.get(i)));
                        }
                        return redis.batch(reindex, reindex.stream().map(x -> keys.queueDue()).toList())
                                .compose(v -> recheck(devices, queues))
                                .compose(v -> expired.isEmpty() ? Future.<Response> succeededFuture()
                                        : redis.send(Request.cmd(Command.DECRBY).arg(keys.queuedTotal())
                                                .arg(expired.size())))
                                .map(v -> expired);
                    });
                });
    }

    /** After the sweeper rewrote index entries: lower them again for commands queued since it read the lists. */
    private Future<Void> recheck(List<String> devices, List<String> queues) {
        List<Request> earliest = new ArrayList<>();
        for (String q : queues) {
            earliest.add(Request.cmd(Command.EVAL).arg(EARLIEST).arg(1).arg(q));
        }
        return redis.batch(earliest, queues).compose(mins -> {
            List<Request> lower = new ArrayList<>();
            for (int i = 0; i < devices.size(); i++) {
                long min = mins.get(i).toLong();
                if (min >= 0) {
                    lower.add(Request.cmd(Command.ZADD).arg(keys.queueDue()).arg("LT").arg(min).arg(devices.get(i)));
                }
            }
            return redis.batch(lower, lower.stream().map(x -> keys.queueDue()).toList()).mapEmpty();
        });
    }

    /** Lowers (or adds) a device's due index entry: it may be early, never late (ZADD LT, Redis 6.2+). */
    private Future<Void> index(String deviceId, long expiresAtMs) {
        return redis.send(Request.cmd(Command.ZADD).arg(keys.queueDue()).arg("LT").arg(expiresAtMs).arg(deviceId))
                .mapEmpty();
    }

    public Future<Long> total() {
        return redis.send(Request.cmd(Command.GET).arg(keys.queuedTotal()))
                .map(r -> r == null ? 0L : r.toLong());
    }

    /** "expiresAtMs:" then the protobuf bytes: the scripts read the expiry without decoding protobuf. */
    private static Buffer item(QueuedCommand command) {
        return Buffer.buffer(command.getExpiresAtMs() + ":").appendBytes(command.toByteArray());
    }

    private static List<QueuedCommand> commands(Response response) {
        List<QueuedCommand> commands = new ArrayList<>();
        if (response == null) {
            return commands;
        }
        for (Response item : response) {
            commands.add(command(item));
        }
        return commands;
    }

    private static QueuedCommand command(Response item) {
        byte[] bytes = item.toBytes();
        int sep = new String(bytes, 0, Math.min(bytes.length, 24), StandardCharsets.US_ASCII).indexOf(':');
        try {
            return QueuedCommand.parseFrom(java.util.Arrays.copyOfRange(bytes, sep + 1, bytes.length));
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            throw new IllegalStateException("corrupt queued command in Redis", e);
        }
    }
}
