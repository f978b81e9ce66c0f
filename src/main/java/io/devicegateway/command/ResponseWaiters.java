package io.devicegateway.command;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import jakarta.inject.Singleton;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.ingest.TelemetryIngest;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
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
 */
@Singleton
public class ResponseWaiters implements MqttSubscription {

    /** A device's answer. */
    public record DeviceResponse(String deviceId, String correlationId, int status, Buffer payload) {
    }

    private final CommandConfig config;
    private final Map<String, Promise<DeviceResponse>> waiting = new ConcurrentHashMap<>();
    private final Vertx vertx;
    private final RedisCalls redis;
    private final RedisKeys keys;
    private final CommandResults results;
    private final TelemetryIngest ingest;
    private final MqttConnection connection;

    ResponseWaiters(CommandConfig config, Vertx vertx, RedisCalls redis, RedisKeys keys, CommandResults results,
            TelemetryIngest ingest, MqttConnection connection) {
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

    /** Registers before publishing, so an answer can never arrive before its waiter. */
    public Future<DeviceResponse> await(String correlationId, long timeoutMs) {
        Promise<DeviceResponse> promise = Promise.promise();
        waiting.put(correlationId, promise);
        long timer = vertx.setTimer(timeoutMs, id -> {
            if (waiting.remove(correlationId, promise)) {
                promise.tryFail(new java.util.concurrent.TimeoutException("no response within " + timeoutMs + " ms"));
            }
        });
        return promise.future().onComplete(done -> vertx.cancelTimer(timer));
    }

    public void cancel(String correlationId) {
        Promise<DeviceResponse> promise = waiting.remove(correlationId);
        if (promise != null) {
            promise.tryFail(new IllegalStateException("cancelled"));
        }
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
        DeviceResponse response = new DeviceResponse(parsed.topic().deviceId(), levels[0], status,
                message.payload());
        Promise<DeviceResponse> waiter = waiting.remove(response.correlationId());
        if (waiter != null) {
            waiter.tryComplete(response);
        }
        // exactly one replica records the response; without Redis (down, or not answering within
        // quarkus.redis.timeout) the replica that was waiting does, and the ack is never held longer than that
        redis.send(Request.cmd(Command.SET).arg(keys.responded(response.correlationId())).arg(connection.instanceId())
                .arg("NX").arg("PX").arg(config.responseClaimTtl().toMillis()))
                .onComplete(claim -> {
                    boolean mine = claim.succeeded() ? claim.result() != null : waiter != null;
                    if (mine) {
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
