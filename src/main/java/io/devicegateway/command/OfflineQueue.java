package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;

import org.jboss.logging.Logger;

import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.QueuedCommand;
import io.vertx.core.Future;
import io.vertx.core.buffer.Buffer;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * Commands waiting in Redis for an offline device: one list per device (oldest first, at most
 * {@code gateway.commands.max-queued-per-device}), a sorted set of devices by earliest expiry for the sweeper, and a
 * total counter. Every change to a device's list is one atomic Lua script on that device's keys only (one Redis
 * Cluster slot), so two replicas never deliver or expire the same command twice, and no script works on more than
 * one device's queue. The due index and the total live in another slot and are written by separate calls (README:
 * what is not atomic): the index may name a device too early (the sweeper then finds nothing to do and corrects it),
 * never too late.
 */
@ApplicationScoped
public class OfflineQueue {

    private static final Logger LOG = Logger.getLogger(OfflineQueue.class);

    /**
     * Queues (1) unless the device came online meanwhile (0), was never seen (-1) or its queue is full (-2).
     * KEYS: session, queue; ARGV: item, cap. The cap is the queue's own length: a global count would be another slot.
     */
    static final String ENQUEUE = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
            if redis.call('HGET', KEYS[1], 'online') == '1' then return 0 end
            if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[2]) then return -2 end
            redis.call('RPUSH', KEYS[2], ARGV[1])
            return 1
            """;

    /**
     * Takes up to ARGV[1] commands from the head of an online device's queue, in order; nothing once the device is
     * offline again (the rest waits for its next return). KEYS: session, queue.
     */
    static final String TAKE = """
            if redis.call('HGET', KEYS[1], 'online') ~= '1' then return {} end
            local items = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
            if #items > 0 then redis.call('LTRIM', KEYS[2], #items, -1) end
            return items
            """;

    /**
     * Puts commands back at the head of a device's queue, keeping their order (never refused: nothing is lost); 0
     * when the first of them is already there, i.e. an earlier attempt landed but its answer was lost (a timeout),
     * so a retry never duplicates them. KEYS: queue.
     */
    static final String REQUEUE = """
            if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
            for i = #ARGV, 1, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
            return #ARGV
            """;

    /**
     * Removes the expired commands of one device: returns {earliest remaining expiry or -1, expired...}. Expired
     * items are overwritten with an empty tombstone and removed together (live items are never rewritten).
     * KEYS: queue.
     */
    static final String SWEEP_DEVICE = """
            local now = tonumber(ARGV[1])
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            local out = {-1}
            local min = nil
            for i, item in ipairs(items) do
              local sep = string.find(item, ':', 1, true)
              local exp = tonumber(string.sub(item, 1, sep - 1))
              if exp <= now then
                table.insert(out, item)
                redis.call('LSET', KEYS[1], i - 1, '')
              elseif (not min) or exp < min then
                min = exp
              end
            end
            if #out > 1 then redis.call('LREM', KEYS[1], 0, '') end
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

    /** Devices whose earliest expiry has passed, at most this many per sweep (each is one short script). */
    private static final int SWEEP_DEVICES = 100;

    private final RedisCalls redis;
    private final RedisKeys keys;
    private final CommandConfig config;

    OfflineQueue(RedisCalls redis, RedisKeys keys, CommandConfig config) {
        this.redis = redis;
        this.keys = keys;
        this.config = config;
    }

    /**
     * 1 queued, 0 the device is online, -1 never seen, -2 its queue is full. The due index is lowered after the
     * push, so a sweep that read the list before it cannot leave the command unindexed.
     */
    public Future<Integer> enqueue(QueuedCommand command) {
        String device = command.getRequest().getDeviceId();
        return redis.send(Request.cmd(Command.EVAL).arg(ENQUEUE).arg(2).arg(keys.session(device))
                        .arg(keys.queue(device)).arg(item(command)).arg(config.maxQueuedPerDevice()))
                .map(Response::toInteger)
                .compose(result -> result != 1 ? Future.succeededFuture(result)
                        : index(device, command.getExpiresAtMs())
                                .compose(v -> redis.send(Request.cmd(Command.INCR).arg(keys.queuedTotal())))
                                .map(v -> result));
    }

    /**
     * The next batch ({@code gateway.commands.drain-batch-size}) of an online device's queue, removed from Redis;
     * empty when none is left or it went offline. Its due index entry is left for the sweeper, which drops it when
     * it finds nothing.
     */
    public Future<List<QueuedCommand>> take(String deviceId) {
        return redis.send(Request.cmd(Command.EVAL).arg(TAKE).arg(2).arg(keys.session(deviceId))
                .arg(keys.queue(deviceId)).arg(config.drainBatchSize())).compose(items -> {
                    int taken = items == null ? 0 : items.size();
                    List<QueuedCommand> commands = commands(items);
                    return taken == 0 ? Future.succeededFuture(commands)
                            : redis.send(Request.cmd(Command.DECRBY).arg(keys.queuedTotal()).arg(taken))
                                    .map(v -> commands).otherwise(commands); // a gauge: the commands count more
                });
    }

    /** Puts commands back at the head of the queue; safe to retry after a failure (see {@link #REQUEUE}). */
    public Future<Void> requeue(String deviceId, List<QueuedCommand> commands) {
        if (commands.isEmpty()) {
            return Future.succeededFuture();
        }
        long minExpiry = commands.stream().mapToLong(QueuedCommand::getExpiresAtMs).min().getAsLong();
        Request request = Request.cmd(Command.EVAL).arg(REQUEUE).arg(1).arg(keys.queue(deviceId));
        commands.forEach(c -> request.arg(item(c)));
        return redis.send(request).map(Response::toInteger)
                .compose(pushed -> index(deviceId, minExpiry).compose(v -> pushed == 0 ? Future.succeededFuture()
                        : redis.send(Request.cmd(Command.INCRBY).arg(keys.queuedTotal()).arg(commands.size()))
                                .<Void> mapEmpty()));
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
                        int removed = 0;
                        List<Request> reindex = new ArrayList<>();
                        for (int i = 0; i < devices.size(); i++) {
                            Response r = swept.get(i);
                            long min = r.get(0).toLong();
                            for (int j = 1; j < r.size(); j++) {
                                removed++;
                                QueuedCommand c = command(r.get(j));
                                if (c != null) {
                                    expired.add(c);
                                }
                            }
                            reindex.add(min < 0 ? Request.cmd(Command.ZREM).arg(keys.queueDue()).arg(devices.get(i))
                                    : Request.cmd(Command.ZADD).arg(keys.queueDue()).arg(min).arg(devices.get(i)));
                        }
                        int decrement = removed;
                        return redis.batch(reindex, reindex.stream().map(x -> keys.queueDue()).toList())
                                .compose(v -> recheck(devices, queues))
                                .compose(v -> decrement == 0 ? Future.<Response> succeededFuture()
                                        : redis.send(Request.cmd(Command.DECRBY).arg(keys.queuedTotal())
                                                .arg(decrement)))
                                .transform(done -> {
                                    // the scripts removed them: they are reported expired even if the index writes
                                    // failed (an entry left early only costs the next sweep a look)
                                    if (done.failed()) {
                                        LOG.debugf("Expiry index not updated after a sweep: %s", done.cause());
                                    }
                                    return Future.succeededFuture(expired);
                                });
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
            QueuedCommand c = command(item);
            if (c != null) {
                commands.add(c);
            }
        }
        return commands;
    }

    /** The command in an item, or null (logged) when it cannot be read. */
    private static QueuedCommand command(Response item) {
        byte[] bytes = item.toBytes();
        int sep = new String(bytes, 0, Math.min(bytes.length, 24), StandardCharsets.US_ASCII).indexOf(':');
        try {
            return QueuedCommand.parseFrom(java.util.Arrays.copyOfRange(bytes, sep + 1, bytes.length));
        } catch (com.google.protobuf.InvalidProtocolBufferException | RuntimeException e) {
            // one unreadable item must not block the device's whole queue forever
            LOG.errorf("Dropping an unreadable queued command (%d bytes) from Redis: %s", bytes.length, e.toString());
            return null;
        }
    }
}
