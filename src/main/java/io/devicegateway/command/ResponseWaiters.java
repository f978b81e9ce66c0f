package io.devicegateway.command;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import jakarta.inject.Singleton;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.ingest.IngestConfig;
import io.devicegateway.ingest.IngestWriter;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConfig;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;

/**
 * Device responses on {@code devices/{id}/responses/{correlationId}[/{status}]}. Every replica subscribes without
 * the shared group, so the replica waiting for a correlation id always sees the answer, whichever replica the
 * command went out from. One replica (the first to claim the correlation id in Redis) records it as RESPONDED.
 *
 * <p>A response counts only from the device the command was sent to: before each publish the command is recorded in
 * Redis under the device's {@code {<id>}:responded:<corr>} key ({@link #expect}), and a waiter is registered under the
 * same pair. A response whose device was not sent that correlation id is dead-lettered
 * ({@code response-device-mismatch}) and completes nothing. The record also keeps a correlation id unique per device
 * while a SendEvent waits for it (ALREADY_EXISTS for a second one), across replicas.
 */
@Singleton
public class ResponseWaiters implements MqttSubscription {

    /** A device's answer. */
    public record DeviceResponse(String deviceId, String correlationId, int status, Buffer payload) {
    }

    /** Room a packet needs beyond its payload (topic, packet id, properties). */
    static final int PACKET_HEADROOM = 16 * 1024;

    /**
     * Records that a command goes out: {@code s} (sent), or {@code w:<deadline ms>} while a SendEvent waits for the
     * answer. Refused (0) while another SendEvent still waits for the same device and correlation id.
     */
    static final String EXPECT = """
            local v = redis.call('GET', KEYS[1])
            if v and string.sub(v, 1, 2) == 'w:' and tonumber(string.sub(v, 3)) > tonumber(ARGV[1]) then return 0 end
            redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
            return 1
            """;

    /**
     * A response arrived: 1 when this replica records it, 0 when it is already recorded, -1 when no command with this
     * correlation id was sent to this device.
     */
    static final String CLAIM = """
            local v = redis.call('GET', KEYS[1])
            if not v then return -1 end
            if string.sub(v, 1, 2) == 'r:' then return 0 end
            redis.call('SET', KEYS[1], 'r:' .. ARGV[1], 'PX', ARGV[2])
            return 1
            """;

    /** A wait ended without an answer: the correlation id is free again (only if it is still this wait's). */
    static final String RELEASE = """
            if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 's', 'PX', ARGV[2]) end
            return 1
            """;

    private final CommandConfig config;
    /** Waiting SendEvent calls by {@code deviceId/correlationId} ('/' appears in neither). */
    private final Map<String, Promise<DeviceResponse>> waiting = new ConcurrentHashMap<>();
    private final Vertx vertx;
    private final RedisCalls redis;
    private final RedisKeys keys;
    private final CommandResults results;
    private final IngestWriter ingest;
    private final MqttConnection connection;

    ResponseWaiters(CommandConfig config, MqttConfig mqtt, IngestConfig ingestConfig, Vertx vertx, RedisCalls redis,
            RedisKeys keys, CommandResults results, IngestWriter ingest, MqttConnection connection) {
        int largest = Math.max(config.maxResponseBytes(), ingestConfig.maxPayloadBytes());
        if ((long) largest + PACKET_HEADROOM > mqtt.maxPacketSize()) {
            // otherwise the broker would drop (for the gateway) messages that should have been accepted or dead-lettered
            throw new IllegalArgumentException("gateway.mqtt.max-packet-size (" + mqtt.maxPacketSize()
                    + ") must be at least " + PACKET_HEADROOM + " bytes above gateway.commands.max-response-bytes and "
                    + "gateway.ingest.max-payload-bytes (largest: " + largest + ")");
        }
        this.config = config;
        this.vertx = vertx;
        this.redis = redis;
        this.keys = keys;
        this.results = results;
        this.ingest = ingest;
        this.connection = connection;
    }

    @Override
    public List<String> filters() {
        return List.of(config.responseFilter());
    }

    @Override
    public boolean shared() {
        return false;
    }

    private static String pair(String deviceId, String correlationId) {
        return deviceId + "/" + correlationId;
    }

    private String key(String deviceId, String correlationId) {
        return keys.responded(deviceId, correlationId);
    }

    /**
     * Registers a waiter before publishing, so an answer can never arrive before it. Fails at once with
     * ALREADY_EXISTS when this replica already waits for the same device and correlation id.
     */
    public Future<DeviceResponse> await(String deviceId, String correlationId, long timeoutMs) {
        if (stopping) {
            return Future.failedFuture(shuttingDown());
        }
        Promise<DeviceResponse> promise = Promise.promise();
        String pair = pair(deviceId, correlationId);
        if (waiting.putIfAbsent(pair, promise) != null) {
            return Future.failedFuture(inUse(deviceId, correlationId));
        }
        long timer = vertx.setTimer(timeoutMs, id -> {
            if (waiting.remove(pair, promise)) {
                promise.tryFail(new java.util.concurrent.TimeoutException("no response within " + timeoutMs + " ms"));
            }
        });
        return promise.future().onComplete(done -> vertx.cancelTimer(timer));
    }

    /**
     * SIGTERM: every waiting SendEvent is answered UNAVAILABLE at once (the agent retries on another replica) and no
     * new wait starts, so open calls never hold the MQTT drain or the pod's grace period back. Runs before the drain.
     */
    void shutdown(@jakarta.enterprise.event.Observes @jakarta.annotation.Priority(10)
            io.quarkus.runtime.ShutdownDelayInitiatedEvent event) {
        stopping = true;
        for (String pair : waiting.keySet()) {
            Promise<DeviceResponse> promise = waiting.remove(pair);
            if (promise != null) {
                promise.tryFail(shuttingDown());
            }
        }
    }

    /** True once shutdown began: new commands are refused with UNAVAILABLE. */
    public boolean stopping() {
        return stopping;
    }

    private static io.grpc.StatusRuntimeException shuttingDown() {
        return Status.UNAVAILABLE.withDescription("gateway instance shutting down; retry (another replica answers)")
                .asRuntimeException();
    }

    private volatile boolean stopping;

    /** Gives up a wait this caller registered (the publish failed); never touches another caller's. */
    public void cancel(String deviceId, String correlationId, Future<DeviceResponse> wait) {
        Promise<DeviceResponse> promise = waiting.get(pair(deviceId, correlationId));
        if (promise != null && promise.future() == wait && waiting.remove(pair(deviceId, correlationId), promise)) {
            promise.tryFail(new IllegalStateException("cancelled"));
        }
    }

    /**
     * Records in Redis that a command with this correlation id goes to this device (before it is published), waiting
     * until {@code waitUntilMs} (0: nobody waits). Fails with ALREADY_EXISTS while a SendEvent waits for the same
     * pair, or with the Redis error.
     */
    public Future<Void> expect(String deviceId, String correlationId, long waitUntilMs) {
        long ttl = Math.max(config.responseClaimTtl().toMillis(), waitUntilMs - System.currentTimeMillis());
        return redis.send(Request.cmd(Command.EVAL).arg(EXPECT).arg(1).arg(key(deviceId, correlationId))
                .arg(System.currentTimeMillis()).arg(waitUntilMs > 0 ? "w:" + waitUntilMs : "s").arg(ttl))
                .compose(r -> r.toInteger() == 1 ? Future.succeededFuture()
                        : Future.failedFuture(inUse(deviceId, correlationId)));
    }

    /** A wait that {@link #expect} recorded ended without an answer: the correlation id may be used again. */
    public Future<Void> release(String deviceId, String correlationId, long waitUntilMs) {
        return redis.send(Request.cmd(Command.EVAL).arg(RELEASE).arg(1).arg(key(deviceId, correlationId))
                .arg("w:" + waitUntilMs).arg(config.responseClaimTtl().toMillis())).<Void> mapEmpty()
                .otherwiseEmpty(); // if Redis is gone, the wait's deadline frees it anyway
    }

    private static StatusRuntimeException inUse(String deviceId, String correlationId) {
        return Status.ALREADY_EXISTS.withDescription("a SendEvent for device " + deviceId + " is still waiting for "
                + "correlation id " + correlationId).asRuntimeException();
    }

    @Override
    public void onMessage(InboundMessage message) {
        DeviceTopic.Parsed parsed = DeviceTopic.parse(message.topic());
        if (!parsed.ok() || parsed.topic().kind() != TopicKind.RESPONSES) {
            ingest.reject(message, parsed.ok() ? RejectReason.TOPIC_NOT_IN_GRAMMAR : parsed.rejection());
            return;
        }
        String[] levels = parsed.topic().subtopic().split("/");
        int status = 200;
        // MQTT 5: a "status" user property may carry it instead of a topic level
        String statusText = levels.length == 2 ? levels[1] : message.userProperty("status");
        if (statusText != null) {
            try {
                status = Integer.parseInt(statusText);
            } catch (NumberFormatException e) {
                ingest.reject(message, RejectReason.INVALID_RESPONSE);
                return;
            }
        }
        // MQTT 5: the Correlation Data the command carried; it must agree with the topic's correlation id
        String correlation = message.correlationText();
        if (correlation != null && !correlation.equals(levels[0])) {
            ingest.reject(message, RejectReason.INVALID_RESPONSE);
            return;
        }
        String device = parsed.topic().deviceId();
        String pair = pair(device, levels[0]);
        int size = message.payloadBytes().length;
        if (size > config.maxResponseBytes()) {
            // only the asked device's wait ends (the key holds the device): another device cannot cut it short
            Promise<DeviceResponse> waiter = waiting.remove(pair);
            if (waiter != null) {
                waiter.tryFail(Status.RESOURCE_EXHAUSTED.withDescription("device " + device + " answered "
                        + levels[0] + " with " + size + " bytes, over gateway.commands.max-response-bytes ("
                        + config.maxResponseBytes() + "); dead-lettered as response-too-large").asRuntimeException());
            }
            ingest.reject(message, RejectReason.RESPONSE_TOO_LARGE);
            return;
        }
        DeviceResponse response = new DeviceResponse(device, levels[0], status, message.payload());
        Promise<DeviceResponse> waiter = waiting.remove(pair);
        // exactly one replica records the response; without Redis (down, or not answering within
        // quarkus.redis.timeout) the replica that was waiting does, and the ack is never held longer than that. The
        // waiting call completes after the claim, so a caller that reuses the correlation id at once finds it free.
        redis.send(Request.cmd(Command.EVAL).arg(CLAIM).arg(1).arg(key(device, levels[0]))
                .arg(connection.instanceId()).arg(config.responseClaimTtl().toMillis()))
                .onComplete(claim -> {
                    if (waiter != null) {
                        waiter.tryComplete(response);
                    }
                    int outcome = claim.succeeded() ? claim.result().toInteger() : (waiter != null ? 1 : 0);
                    if (outcome == -1 && waiter != null) {
                        outcome = 1; // our own waiter proves the device was asked, even if Redis lost the record
                    }
                    if (outcome == -1) {
                        ingest.reject(message, RejectReason.RESPONSE_DEVICE_MISMATCH);
                        return;
                    }
                    if (outcome == 1) {
                        results.record(CommandResult.newBuilder().setCorrelationId(response.correlationId())
                                .setDeviceId(response.deviceId()).setOutcome(CommandOutcome.COMMAND_RESPONDED)
                                .setResponseStatus(response.status())
                                .setResponsePayload(com.google.protobuf.ByteString.copyFrom(response.payload().getBytes()))
                                .setSource(waiter != null ? "grpc" : ""));
                    }
                    message.ack();
                });
    }

}
