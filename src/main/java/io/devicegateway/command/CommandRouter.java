package io.devicegateway.command;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
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
    private static final long RETRY_DELAY_MS = 500;
    private static final long MAX_RETRY_DELAY_MS = 10_000;

    private final CommandConfig config;
    private final SessionStore sessions;
    private final OfflineQueue queue;
    private final ResponseWaiters responses;
    private final CommandResults results;
    private final MqttConnection mqtt;
    private final Vertx vertx;
    /** Devices whose queue this replica is delivering, with a count of online events seen meanwhile. */
    private final Map<String, Integer> draining = new ConcurrentHashMap<>();
    private final AtomicBoolean sweeping = new AtomicBoolean();

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

    private long sweepTimer = -1;

    /** The sweep must not reach the Redis client once Quarkus has destroyed it. */
    void stop(@Observes io.quarkus.runtime.ShutdownEvent event) {
        vertx.cancelTimer(sweepTimer);
    }

    void start(@Observes StartupEvent event) {
        sweepTimer = vertx.setPeriodic(config.expirySweepInterval().toMillis(), id -> sweep());
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
     * Sends a validated request (see {@link #validate}) requested now. Fails with a gRPC status: NOT_FOUND,
     * FAILED_PRECONDITION, ALREADY_EXISTS, RESOURCE_EXHAUSTED, UNAVAILABLE or DEADLINE_EXCEEDED. Every outcome,
     * failures included, is recorded as a command result.
     */
    public Future<SendEventResponse> send(SendEventRequest request, String source) {
        return send(request, source, System.currentTimeMillis());
    }

    /** As {@link #send(SendEventRequest, String)}, for a command requested at {@code requestedAtMs} (TTL from then). */
    public Future<SendEventResponse> send(SendEventRequest request, String source, long requestedAtMs) {
        String device = request.getDeviceId();
        long expiresAt = request.getTtlSeconds() > 0 ? requestedAtMs + request.getTtlSeconds() * 1000L : 0;
        return knownSession(device)
                .compose(session -> {
                    if (session.online()) {
                        return deliver(request, source, expiresAt);
                    }
                    if (request.getTtlSeconds() == 0) {
                        return Future.failedFuture(Status.FAILED_PRECONDITION
                                .withDescription("device " + device + " is offline and ttl_seconds is 0")
                                .asRuntimeException());
                    }
                    return enqueue(request, source, expiresAt);
                })
                .onFailure(e -> failed(request, source, e));
    }

    /**
     * Throws UNAVAILABLE while this instance cannot take a command: shutting down, or its command-results writer
     * holds its bound of unwritten results (Kafka down or refusing), so results never queue without limit.
     */
    public void checkAccepting() {
        if (responses.stopping()) {
            throw Status.UNAVAILABLE.withDescription("gateway instance shutting down; retry (another replica answers)")
                    .asRuntimeException();
        }
        if (!results.accepting()) {
            throw Status.UNAVAILABLE.withDescription("command results cannot be written to Kafka at the moment; retry")
                    .asRuntimeException();
        }
    }

    /** Records a command that went stale before the gateway could send it (never sent to the device). */
    public void expiredBeforeSending(SendEventRequest request, String source, String why) {
        results.record(result(request, source, CommandOutcome.COMMAND_EXPIRED).setDetail(why));
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

    private Future<SendEventResponse> enqueue(SendEventRequest request, String source, long expiresAt) {
        long now = System.currentTimeMillis();
        QueuedCommand command = QueuedCommand.newBuilder().setRequest(request).setQueuedAtMs(now)
                .setExpiresAtMs(expiresAt).setSource(source).build();
        return queue.enqueue(command)
                .recover(e -> Future.failedFuture(unavailable(e)))
                .compose(result -> switch (result) {
                    case 1 -> {
                        record(request, source, CommandOutcome.COMMAND_QUEUED);
                        yield Future.succeededFuture(response(request, Outcome.QUEUED));
                    }
                    case 0 -> deliver(request, source, expiresAt); // came online in between
                    case -2 -> Future.failedFuture(Status.RESOURCE_EXHAUSTED
                            .withDescription("device " + request.getDeviceId() + " already has "
                                    + config.maxQueuedPerDevice() + " queued commands (gateway.commands."
                                    + "max-queued-per-device)")
                            .asRuntimeException());
                    default -> Future.failedFuture(Status.NOT_FOUND
                            .withDescription("device " + request.getDeviceId() + " has never been seen")
                            .asRuntimeException());
                });
    }

    /**
     * Publishes to an online device. The command is first recorded in Redis as sent to this device (so only this
     * device's response completes it, and a correlation id still waited for is refused), then published.
     */
    private Future<SendEventResponse> deliver(SendEventRequest request, String source, long expiresAt) {
        String device = request.getDeviceId();
        String correlationId = request.getCorrelationId();
        Future<ResponseWaiters.DeviceResponse> answer = null;
        long waitUntil = 0;
        if (request.getAwaitResponse()) {
            long timeout = request.getResponseTimeoutMs() > 0 ? request.getResponseTimeoutMs()
                    : config.defaultResponseTimeout().toMillis();
            waitUntil = System.currentTimeMillis() + timeout;
            answer = responses.await(device, correlationId, timeout);
            if (answer.failed()) {
                return Future.failedFuture(answer.cause()); // this replica already waits for it
            }
        }
        Future<ResponseWaiters.DeviceResponse> awaited = answer;
        long until = waitUntil;
        return responses.expect(device, correlationId, until).recover(e -> {
            if (awaited != null) {
                responses.cancel(device, correlationId, awaited);
            }
            return Future.failedFuture(e instanceof StatusRuntimeException ? e : unavailable(e));
        }).compose(recorded -> publish(request, remainingSeconds(expiresAt)).recover(e -> {
            StatusRuntimeException unavailable = Status.UNAVAILABLE
                    .withDescription("MQTT broker unavailable: " + e.getMessage()).asRuntimeException();
            if (awaited == null) {
                return Future.failedFuture(unavailable);
            }
            responses.cancel(device, correlationId, awaited);
            return responses.release(device, correlationId, until).compose(v -> Future.failedFuture(unavailable));
        })).compose(published -> {
            record(request, source, CommandOutcome.COMMAND_DELIVERED);
            if (awaited == null) {
                return Future.succeededFuture(response(request, Outcome.DELIVERED));
            }
            return awaited.transform(done -> {
                if (done.failed()) {
                    // the correlation id is free again before the caller hears of the failure (and may retry)
                    StatusRuntimeException error = done.cause() instanceof StatusRuntimeException specific ? specific
                            : Status.DEADLINE_EXCEEDED.withDescription("device " + device + " did not respond to "
                                    + correlationId + ": " + done.cause().getMessage()).asRuntimeException();
                    return responses.release(device, correlationId, until)
                            .compose(v -> Future.<SendEventResponse> failedFuture(error));
                }
                ResponseWaiters.DeviceResponse r = done.result();
                return Future.succeededFuture(response(request, Outcome.RESPONDED).toBuilder()
                        .setResponsePayload(ByteString.copyFrom(r.payload().getBytes()))
                        .setResponseStatus(r.status()).build());
            });
        });
    }

    /** What is left of a TTL in whole seconds (at least 1), for the Message Expiry Interval; 0 without a TTL. */
    private static long remainingSeconds(long expiresAtMs) {
        return expiresAtMs == 0 ? 0 : Math.max(1, (expiresAtMs - System.currentTimeMillis() + 999) / 1000);
    }

    /** The topic an MQTT 5 device is told to answer on (the same one the 3.1.1 convention uses). */
    public static String responseTopic(String deviceId, String correlationId) {
        return DeviceTopic.ROOT + "/" + deviceId + "/responses/" + correlationId;
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

    /**
     * A device came online: deliver its queue in order, in batches; what expired meanwhile is reported as expired.
     * One drain per device at a time on this replica (so commands put back keep their place); a return while it runs
     * makes it look at the queue once more before it ends.
     */
    void onDeviceOnline(@Observes DeviceOnline event) {
        if (draining.merge(event.deviceId(), 1, Integer::sum) == 1) {
            drain(event.deviceId(), 0);
        }
    }

    private void drain(String deviceId, int attempt) {
        Integer generation = draining.get(deviceId);
        queue.take(deviceId).onComplete(taken -> {
            if (taken.failed()) {
                retryLater(deviceId, attempt, "reading its queue failed: " + taken.cause().getMessage(),
                        () -> drain(deviceId, attempt + 1));
            } else if (!taken.result().isEmpty()) {
                deliverQueued(deviceId, taken.result(), 0, attempt);
            } else if (!draining.remove(deviceId, generation)) {
                drain(deviceId, 0); // it came online again meanwhile
            }
        });
    }

    private void deliverQueued(String deviceId, List<QueuedCommand> batch, int index, int attempt) {
        if (index >= batch.size()) {
            drain(deviceId, attempt); // the next batch
            return;
        }
        QueuedCommand command = batch.get(index);
        if (command.getExpiresAtMs() <= System.currentTimeMillis()) {
            record(command.getRequest(), command.getSource(), CommandOutcome.COMMAND_EXPIRED);
            deliverQueued(deviceId, batch, index + 1, attempt);
            return;
        }
        SendEventRequest request = command.getRequest();
        responses.expect(deviceId, request.getCorrelationId(), 0)
                .compose(recorded -> publish(request, remainingSeconds(command.getExpiresAtMs())))
                .onSuccess(v -> {
                    record(request, command.getSource(), CommandOutcome.COMMAND_DELIVERED);
                    deliverQueued(deviceId, batch, index + 1, 0);
                }).onFailure(e -> {
                    if (e instanceof StatusRuntimeException refused) { // its correlation id is still waited for
                        failed(request, command.getSource(), refused);
                        deliverQueued(deviceId, batch, index + 1, attempt);
                        return;
                    }
                    // broker or Redis gone mid-way: the rest goes back to the head of the queue, still in order
                    putBack(deviceId, new ArrayList<>(batch.subList(index, batch.size())), attempt, e.getMessage());
                });
    }

    /**
     * Returns commands that could not be published to the head of the queue and retries the drain later; while
     * Redis refuses even that, they stay here and the put-back is retried, so every one ends delivered or expired.
     */
    private void putBack(String deviceId, List<QueuedCommand> commands, int attempt, String why) {
        List<QueuedCommand> rest = new ArrayList<>();
        long now = System.currentTimeMillis();
        for (QueuedCommand c : commands) {
            if (c.getExpiresAtMs() <= now) {
                record(c.getRequest(), c.getSource(), CommandOutcome.COMMAND_EXPIRED);
            } else {
                rest.add(c);
            }
        }
        queue.requeue(deviceId, rest).onComplete(requeued -> {
            if (requeued.succeeded()) {
                retryLater(deviceId, attempt, why + "; " + rest.size() + " put back",
                        () -> drain(deviceId, attempt + 1));
            } else {
                retryLater(deviceId, attempt, why + "; putting " + rest.size() + " back failed too ("
                        + requeued.cause().getMessage() + "), kept in memory",
                        () -> putBack(deviceId, rest, attempt + 1, requeued.cause().getMessage()));
            }
        });
    }

    private void retryLater(String deviceId, int attempt, String why, Runnable retry) {
        long delay = Math.min(MAX_RETRY_DELAY_MS, RETRY_DELAY_MS << Math.min(attempt, 5));
        if (attempt == 0) {
            LOG.warnf("Delivery of queued commands to %s interrupted (%s); retrying in %d ms", deviceId, why, delay);
        } else {
            LOG.debugf("Delivery of queued commands to %s still interrupted (%s); retrying in %d ms", deviceId, why,
                    delay);
        }
        vertx.setTimer(delay, id -> retry.run());
    }

    /**
     * Removes expired commands (one short script per due device, see {@link OfflineQueue#sweepExpired}); one sweep at
     * a time, so a slow Redis never piles them up.
     */
    private void sweep() {
        if (!sweeping.compareAndSet(false, true)) {
            return;
        }
        queue.sweepExpired(System.currentTimeMillis())
                .onSuccess(expired -> expired.forEach(c -> record(c.getRequest(), c.getSource(),
                        CommandOutcome.COMMAND_EXPIRED)))
                .onComplete(done -> sweeping.set(false));
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
