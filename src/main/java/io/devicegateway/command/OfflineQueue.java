package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;

import org.jboss.logging.Logger;

import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.QueuedCommand;
import io.vertx.core.Future;
import io.vertx.core.buffer.Buffer;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * Commands waiting in Redis for an offline device: one list per device (oldest first, at most
 * {@code gateway.commands.max-queued-per-device}), a sorted set of devices by earliest expiry for the sweeper, and a
 * total counter. Every operation is one atomic Lua script over one device's queue, so two replicas never deliver or
 * expire the same command twice, and no script works on more than one device's queue (Redis is never blocked for
 * long, whatever the number of queues).
 */
@ApplicationScoped
public class OfflineQueue {

    private static final Logger LOG = Logger.getLogger(OfflineQueue.class);

    /** Queues (1) unless the device came online meanwhile (0), was never seen (-1) or its queue is full (-2). */
    static final String ENQUEUE = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
            if redis.call('HGET', KEYS[1], 'online') == '1' then return 0 end
            if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -2 end
            redis.call('RPUSH', KEYS[2], ARGV[1])
            local cur = redis.call('ZSCORE', KEYS[3], ARGV[3])
            if (not cur) or tonumber(ARGV[2]) < tonumber(cur) then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3]) end
            redis.call('INCR', KEYS[4])
            return 1
            """;

    /**
     * Takes up to ARGV[2] commands from the head of an online device's queue, in order; nothing once the device is
     * offline again (the rest waits for its next return). The due score may stay lower than the queue's real earliest
     * expiry: the sweeper then finds nothing expired and corrects it.
     */
    static final String TAKE = """
            if redis.call('HGET', KEYS[1], 'online') ~= '1' then return {} end
            local items = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)
            if #items > 0 then
              redis.call('LTRIM', KEYS[2], #items, -1)
              redis.call('DECRBY', KEYS[4], #items)
            end
            if redis.call('LLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
            return items
            """;

    /** Puts commands back at the head of a device's queue, keeping their order (never refused: nothing is lost). */
    static final String REQUEUE = """
            for i = #ARGV, 3, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
            local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
            if (not cur) or tonumber(ARGV[2]) < tonumber(cur) then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
            redis.call('INCRBY', KEYS[3], #ARGV - 2)
            return 1
            """;

    /**
     * Removes and returns the expired commands of one device: expired items are overwritten with an empty tombstone
     * and removed together (live items are never rewritten), and the device's due score becomes its earliest expiry.
     */
    static final String SWEEP = """
            local now = tonumber(ARGV[1])
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            local expired = {}
            local min = nil
            for i, item in ipairs(items) do
              local sep = string.find(item, ':', 1, true)
              local exp = tonumber(string.sub(item, 1, sep - 1))
              if exp <= now then
                table.insert(expired, item)
                redis.call('LSET', KEYS[1], i - 1, '')
              elseif (not min) or exp < min then
                min = exp
              end
            end
            if #expired > 0 then
              redis.call('LREM', KEYS[1], 0, '')
              redis.call('DECRBY', KEYS[3], #expired)
            end
            if min then redis.call('ZADD', KEYS[2], min, ARGV[2]) else redis.call('ZREM', KEYS[2], ARGV[2]) end
            return expired
            """;

    private final Redis redis;
    private final RedisKeys keys;
    private final CommandConfig config;

    OfflineQueue(Redis redis, RedisKeys keys, CommandConfig config) {
        this.redis = redis;
        this.keys = keys;
        this.config = config;
    }

    /** 1 queued, 0 the device is online, -1 never seen, -2 its queue is full. */
    public Future<Integer> enqueue(QueuedCommand command) {
        String device = command.getRequest().getDeviceId();
        return redis.send(Request.cmd(Command.EVAL).arg(ENQUEUE).arg(4).arg(keys.session(device))
                .arg(keys.queue(device)).arg(keys.queueDue()).arg(keys.queuedTotal()).arg(item(command))
                .arg(command.getExpiresAtMs()).arg(device).arg(config.maxQueuedPerDevice()))
                .map(Response::toInteger);
    }

    /** The next batch of an online device's queue, removed from Redis; empty when none is left or it went offline. */
    public Future<List<QueuedCommand>> take(String deviceId) {
        return redis.send(Request.cmd(Command.EVAL).arg(TAKE).arg(4).arg(keys.session(deviceId))
                .arg(keys.queue(deviceId)).arg(keys.queueDue()).arg(keys.queuedTotal()).arg(deviceId)
                .arg(config.drainBatchSize())).map(OfflineQueue::commands);
    }

    public Future<Void> requeue(String deviceId, List<QueuedCommand> commands) {
        if (commands.isEmpty()) {
            return Future.succeededFuture();
        }
        long minExpiry = commands.stream().mapToLong(QueuedCommand::getExpiresAtMs).min().getAsLong();
        Request request = Request.cmd(Command.EVAL).arg(REQUEUE).arg(3).arg(keys.queue(deviceId))
                .arg(keys.queueDue()).arg(keys.queuedTotal()).arg(deviceId).arg(minExpiry);
        commands.forEach(c -> request.arg(item(c)));
        return redis.send(request).mapEmpty();
    }

    /** Devices with a command that may have expired by now, at most {@code limit}. */
    public Future<List<String>> due(long nowMillis, int limit) {
        return redis.send(Request.cmd(Command.ZRANGEBYSCORE).arg(keys.queueDue()).arg("-inf").arg(nowMillis)
                .arg("LIMIT").arg(0).arg(limit)).map(r -> {
                    List<String> ids = new ArrayList<>();
                    if (r != null) {
                        r.forEach(id -> ids.add(id.toString()));
                    }
                    return ids;
                });
    }

    /** Removes and returns the expired commands of one device. */
    public Future<List<QueuedCommand>> sweepExpired(String deviceId, long nowMillis) {
        return redis.send(Request.cmd(Command.EVAL).arg(SWEEP).arg(3).arg(keys.queue(deviceId)).arg(keys.queueDue())
                .arg(keys.queuedTotal()).arg(nowMillis).arg(deviceId)).map(OfflineQueue::commands);
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
            byte[] bytes = item.toBytes();
            int sep = new String(bytes, 0, Math.min(bytes.length, 24), StandardCharsets.US_ASCII).indexOf(':');
            try {
                commands.add(QueuedCommand.parseFrom(java.util.Arrays.copyOfRange(bytes, sep + 1, bytes.length)));
            } catch (com.google.protobuf.InvalidProtocolBufferException | RuntimeException e) {
                // one unreadable item must not block the device's whole queue forever
                LOG.errorf("Dropping an unreadable queued command (%d bytes) from Redis: %s", bytes.length, e.toString());
            }
        }
        return commands;
    }
}
