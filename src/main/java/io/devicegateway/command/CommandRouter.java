package io.devicegateway.command;

import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import com.google.protobuf.ByteString;

import io.devicegateway.contract.DeviceIds;
import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.PublishOptions;
import io.devicegateway.session.DeviceOnline;
import io.devicegateway.session.SessionRecord;
import io.devicegateway.session.SessionStore;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.QueuedCommand;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;

/**
 * The one path for commands, whether requested through gRPC or Kafka: validate, look the device up in Redis,
 * publish to an online device, queue for an offline one (TTL), deliver the queue in order when the device comes
 * back, expire what waited too long, and record every outcome in {@code iot.command-results}.
 */
@ApplicationScoped
public class CommandRouter {

    private static final Logger LOG = Logger.getLogger(CommandRouter.class);
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._:-]{1,128}");

    private final CommandConfig config;
    private final SessionStore sessions;
    private final OfflineQueue queue;
    private final ResponseWaiters responses;
    private final CommandResults results;
    private final MqttConnection mqtt;
    private final Vertx vertx;

    CommandRouter(CommandConfig config, SessionStore sessions, OfflineQueue queue, ResponseWaiters responses,
            CommandResults results, MqttConnection mqtt, Vertx vertx) {
        this.config = config;
        this.sessions = sessions;
        this.queue = queue;
        this.responses = responses;
        this.results = results;
        this.mqtt = mqtt;
        this.vertx = vertx;
    }

    void start(@Observes StartupEvent event) {
        vertx.setPeriodic(config.expirySweepInterval().toMillis(), id -> sweep());
    }

    /** The topic a command is published to. */
    public static String commandTopic(String deviceId, String name, String correlationId) {
        return DeviceTopic.ROOT + "/" + deviceId + "/commands/" + name + "/" + correlationId;
    }

    /** Rejects what the contract does not allow, with INVALID_ARGUMENT naming the field. */
    public SendEventRequest validate(SendEventRequest request) {
        if (!DeviceIds.isValid(request.getDeviceId())) {
            throw invalid("device_id must match [A-Za-z0-9._:-]{1,128}");
        }
        if (!NAME.matcher(request.getName()).matches()) {
            throw invalid("name must be one topic level of [A-Za-z0-9._:-] (no '/', '+', '#'), 1-128 characters");
        }
        if (request.getPayload().size() > config.maxPayloadBytes()) {
            throw invalid("payload is " + request.getPayload().size() + " bytes, the limit is "
                    + config.maxPayloadBytes());
        }
        if (request.hasQos() && (request.getQos() < 0 || request.getQos() > 2)) {
            throw invalid("qos must be 0, 1 or 2");
        }
        if (request.getTtlSeconds() < 0 || request.getTtlSeconds() > config.maxTtl().toSeconds()) {
            throw invalid("ttl_seconds must be between 0 and " + config.maxTtl().toSeconds());
        }
        if (request.getResponseTimeoutMs() < 0
                || request.getResponseTimeoutMs() > config.maxResponseTimeout().toMillis()) {
            throw invalid("response_timeout_ms must be between 0 and " + config.maxResponseTimeout().toMillis());
        }
        if (!request.getCorrelationId().isEmpty() && !DeviceIds.isValid(request.getCorrelationId())) {
            throw invalid("correlation_id must match [A-Za-z0-9._:-]{1,128}");
        }
        return request.getCorrelationId().isEmpty()
                ? request.toBuilder().setCorrelationId(UUID.randomUUID().toString()).build()
                : request;
    }

    /**
     * Sends a validated request (see {@link #validate}). Fails with a gRPC status: NOT_FOUND, FAILED_PRECONDITION,
     * UNAVAILABLE or DEADLINE_EXCEEDED. Every outcome, failures included, is recorded as a command result.
     */
    public Future<SendEventResponse> send(SendEventRequest request, String source) {
        String device = request.getDeviceId();
        return knownSession(device)
                .compose(session -> {
                    if (session.online()) {
                        return deliver(request, source);
                    }
                    if (request.getTtlSeconds() == 0) {
                        return Future.failedFuture(Status.FAILED_PRECONDITION
                                .withDescription("device " + device + " is offline and ttl_seconds is 0")
                                .asRuntimeException());
                    }
                    return enqueue(request, source);
                })
                .onFailure(e -> failed(request, source, e));
    }

    /** The device's session; fails with UNAVAILABLE (Redis unreachable) or NOT_FOUND (never seen). */
    public Future<SessionRecord> knownSession(String deviceId) {
        return sessions.get(deviceId)
                .recover(e -> Future.failedFuture(unavailable(e)))
                .compose(session -> session.isPresent() ? Future.succeededFuture(session.get())
                        : Future.failedFuture(Status.NOT_FOUND.withDescription("device " + deviceId
                                + " has never been seen").asRuntimeException()));
    }

    static StatusRuntimeException unavailable(Throwable redisFailure) {
        return Status.UNAVAILABLE.withDescription("session store (Redis) unavailable: " + redisFailure.getMessage())
                .asRuntimeException();
    }

    private Future<SendEventResponse> enqueue(SendEventRequest request, String source) {
        long now = System.currentTimeMillis();
        QueuedCommand command = QueuedCommand.newBuilder().setRequest(request).setQueuedAtMs(now)
                .setExpiresAtMs(now + request.getTtlSeconds() * 1000L).setSource(source).build();
        return queue.enqueue(command)
                .recover(e -> Future.failedFuture(unavailable(e)))
                .compose(result -> switch (result) {
                    case 1 -> {
                        record(request, source, CommandOutcome.COMMAND_QUEUED);
                        yield Future.succeededFuture(response(request, Outcome.QUEUED));
                    }
                    case 0 -> deliver(request, source); // came online in between
                    default -> Future.failedFuture(Status.NOT_FOUND
                            .withDescription("device " + request.getDeviceId() + " has never been seen")
                            .asRuntimeException());
                });
    }

    private Future<SendEventResponse> deliver(SendEventRequest request, String source) {
        String correlationId = request.getCorrelationId();
        Future<ResponseWaiters.DeviceResponse> answer = null;
        if (request.getAwaitResponse()) {
            long timeout = request.getResponseTimeoutMs() > 0 ? request.getResponseTimeoutMs()
                    : config.defaultResponseTimeout().toMillis();
            answer = responses.await(correlationId, timeout);
        }
        Future<ResponseWaiters.DeviceResponse> awaited = answer;
        return publish(request).recover(e -> {
            if (awaited != null) {
                responses.cancel(correlationId);
            }
            return Future.failedFuture(Status.UNAVAILABLE.withDescription("MQTT broker unavailable: " + e.getMessage())
                    .asRuntimeException());
        }).compose(published -> {
            record(request, source, CommandOutcome.COMMAND_DELIVERED);
            if (awaited == null) {
                return Future.succeededFuture(response(request, Outcome.DELIVERED));
            }
            return awaited.transform(done -> {
                if (done.failed()) {
                    return Future.failedFuture(Status.DEADLINE_EXCEEDED
                            .withDescription("device " + request.getDeviceId() + " did not respond to "
                                    + correlationId + ": " + done.cause().getMessage())
                            .asRuntimeException());
                }
                ResponseWaiters.DeviceResponse r = done.result();
                return Future.succeededFuture(response(request, Outcome.RESPONDED).toBuilder()
                        .setResponsePayload(ByteString.copyFrom(r.payload().getBytes()))
                        .setResponseStatus(r.status()).build());
            });
        });
    }

    /** The topic an MQTT 5 device is told to answer on (the same one the 3.1.1 convention uses). */
    public static String responseTopic(String deviceId, String correlationId) {
        return DeviceTopic.ROOT + "/" + deviceId + "/responses/" + correlationId;
    }

    private Future<Void> publish(SendEventRequest request) {
        return publish(request, request.getTtlSeconds());
    }

    /**
     * Publishes a command. MQTT 5 devices also get a Response Topic and Correlation Data to answer with, and the
     * remaining TTL as Message Expiry Interval, so the broker drops a command that went stale in its queue.
     */
    private Future<Void> publish(SendEventRequest request, long expirySeconds) {
        int qos = request.hasQos() ? request.getQos() : 1;
        PublishOptions options = new PublishOptions(Math.max(0, expirySeconds),
                responseTopic(request.getDeviceId(), request.getCorrelationId()), request.getCorrelationId(),
                request.getContentType());
        return mqtt.publish(commandTopic(request.getDeviceId(), request.getName(), request.getCorrelationId()),
                Buffer.buffer(request.getPayload().toByteArray()), qos, false, options);
    }

    /** A device came online: deliver its queue in order; what expired meanwhile is reported as expired. */
    void onDeviceOnline(@Observes DeviceOnline event) {
        queue.drain(event.deviceId()).onSuccess(commands -> deliverQueued(event.deviceId(), commands, 0))
                .onFailure(e -> LOG.warnf("Could not drain the queue of %s: %s", event.deviceId(), e.getMessage()));
    }

    private void deliverQueued(String deviceId, List<QueuedCommand> commands, int index) {
        if (index >= commands.size()) {
            return;
        }
        QueuedCommand command = commands.get(index);
        if (command.getExpiresAtMs() <= System.currentTimeMillis()) {
            record(command.getRequest(), command.getSource(), CommandOutcome.COMMAND_EXPIRED);
            deliverQueued(deviceId, commands, index + 1);
            return;
        }
        long remaining = Math.max(1, (command.getExpiresAtMs() - System.currentTimeMillis() + 999) / 1000);
        publish(command.getRequest(), remaining).onSuccess(v -> {
            record(command.getRequest(), command.getSource(), CommandOutcome.COMMAND_DELIVERED);
            deliverQueued(deviceId, commands, index + 1);
        }).onFailure(e -> {
            // broker gone mid-way: the rest goes back to the head of the queue, still in order
            List<QueuedCommand> rest = new ArrayList<>(commands.subList(index, commands.size()));
            LOG.warnf("Delivery of queued commands to %s interrupted (%s); %d re-queued", deviceId, e.getMessage(),
                    rest.size());
            queue.requeue(deviceId, rest);
        });
    }

    private void sweep() {
        queue.sweepExpired(System.currentTimeMillis()).onSuccess(expired -> expired
                .forEach(c -> record(c.getRequest(), c.getSource(), CommandOutcome.COMMAND_EXPIRED)));
        queue.total().onSuccess(results.queued::set);
    }

    private void failed(SendEventRequest request, String source, Throwable error) {
        Status status = Status.fromThrowable(error);
        results.record(result(request, source, CommandOutcome.COMMAND_FAILED)
                .setDetail(status.getCode() + ": " + status.getDescription()));
    }

    /** Records a failure for a request that did not pass validation. */
    public void rejected(SendEventRequest request, String source, StatusRuntimeException error) {
        failed(request, source, error);
    }

    private void record(SendEventRequest request, String source, CommandOutcome outcome) {
        results.record(result(request, source, outcome));
    }

    private static CommandResult.Builder result(SendEventRequest request, String source, CommandOutcome outcome) {
        return CommandResult.newBuilder().setCorrelationId(request.getCorrelationId())
                .setDeviceId(request.getDeviceId()).setName(request.getName()).setOutcome(outcome).setSource(source);
    }

    private static SendEventResponse response(SendEventRequest request, Outcome outcome) {
        return SendEventResponse.newBuilder().setOutcome(outcome).setCorrelationId(request.getCorrelationId()).build();
    }

    private static StatusRuntimeException invalid(String why) {
        return Status.INVALID_ARGUMENT.withDescription(why).asRuntimeException();
    }
}
