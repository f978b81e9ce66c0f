package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;

import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.QueuedCommand;
import io.vertx.core.Future;
import io.vertx.core.buffer.Buffer;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * Commands waiting in Redis for an offline device: one list per device (oldest first), a sorted set of devices
 * by earliest expiry for the sweeper, and a total counter. Every operation is one atomic Lua script, so two
 * replicas never deliver or expire the same command twice.
 */
@ApplicationScoped
public class OfflineQueue {

    /** Queues unless the device came online meanwhile (0) or was never seen (-1); 1 when queued. */
    static final String ENQUEUE = """
            if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
            if redis.call('HGET', KEYS[1], 'online') == '1' then return 0 end
            redis.call('RPUSH', KEYS[2], ARGV[1])
            local cur = redis.call('ZSCORE', KEYS[3], ARGV[3])
            if (not cur) or tonumber(ARGV[2]) < tonumber(cur) then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3]) end
            redis.call('INCR', KEYS[4])
            return 1
            """;

    /** Takes the whole queue of a device, in order. */
    static final String DRAIN = """
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            redis.call('DEL', KEYS[1])
            redis.call('ZREM', KEYS[2], ARGV[1])
            if #items > 0 then redis.call('DECRBY', KEYS[3], #items) end
            return items
            """;

    /** Puts commands back at the head of a device's queue, keeping their order. */
    static final String REQUEUE = """
            for i = #ARGV, 3, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
            local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
            if (not cur) or tonumber(ARGV[2]) < tonumber(cur) then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
            redis.call('INCRBY', KEYS[3], #ARGV - 2)
            return 1
            """;

    /** Removes and returns expired commands of up to 100 due devices. */
    static final String SWEEP = """
            local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
            local expired = {}
            for _, id in ipairs(ids) do
              local q = ARGV[2] .. 'queue:' .. id
              local items = redis.call('LRANGE', q, 0, -1)
              redis.call('DEL', q)
              local min = nil
              for _, item in ipairs(items) do
                local sep = string.find(item, ':', 1, true)
                local exp = tonumber(string.sub(item, 1, sep - 1))
                if exp <= tonumber(ARGV[1]) then
                  table.insert(expired, item)
                else
                  redis.call('RPUSH', q, item)
                  if (not min) or exp < min then min = exp end
                end
              end
              if min then redis.call('ZADD', KEYS[1], min, id) else redis.call('ZREM', KEYS[1], id) end
            end
            if #expired > 0 then redis.call('DECRBY', KEYS[2], #expired) end
            return expired
            """;

    private final Redis redis;
    private final RedisKeys keys;

    OfflineQueue(Redis redis, RedisKeys keys) {
        this.redis = redis;
        this.keys = keys;
    }

    public Future<Integer> enqueue(QueuedCommand command) {
        String device = command.getRequest().getDeviceId();
        return redis.send(Request.cmd(Command.EVAL).arg(ENQUEUE).arg(4).arg(keys.session(device))
                .arg(keys.queue(device)).arg(keys.queueDue()).arg(keys.queuedTotal()).arg(item(command))
                .arg(command.getExpiresAtMs()).arg(device)).map(Response::toInteger);
    }

    public Future<List<QueuedCommand>> drain(String deviceId) {
        return redis.send(Request.cmd(Command.EVAL).arg(DRAIN).arg(3).arg(keys.queue(deviceId))
                .arg(keys.queueDue()).arg(keys.queuedTotal()).arg(deviceId)).map(OfflineQueue::commands);
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

    public Future<List<QueuedCommand>> sweepExpired(long nowMillis) {
        return redis.send(Request.cmd(Command.EVAL).arg(SWEEP).arg(2).arg(keys.queueDue()).arg(keys.queuedTotal())
                .arg(nowMillis).arg(keys.prefix())).map(OfflineQueue::commands);
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
            } catch (com.google.protobuf.InvalidProtocolBufferException e) {
                throw new IllegalStateException("corrupt queued command in Redis", e);
            }
        }
        return commands;
    }
}
