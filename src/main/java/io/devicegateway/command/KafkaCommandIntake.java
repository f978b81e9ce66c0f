package io.devicegateway.command;

import java.time.Instant;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

import jakarta.enterprise.context.ApplicationScoped;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.eclipse.microprofile.reactive.messaging.Incoming;
import org.jboss.logging.Logger;

import io.devicegateway.v1.SendEventRequest;
import io.grpc.StatusRuntimeException;

/**
 * Commands requested through Kafka: records on {@code iot.commands} (value: {@code SendEventRequest}) take the
 * same path as gRPC requests; every outcome, failures included, goes to {@code iot.command-results}. A record is
 * committed once its outcome is known. Kafka requests do not wait for responses (a response is still recorded).
 *
 * <p>A command's TTL counts from the record's timestamp (when it was requested), not from when the gateway reads it:
 * a record older than its TTL (or than {@code gateway.commands.kafka-max-delay} without a TTL) becomes an EXPIRED
 * result and is never sent, so a gateway catching up on a backlog never replays stale commands to devices. There is no
 * bearer token on this path: the topic's Kafka ACLs decide who may command devices (see README).
 */
@ApplicationScoped
public class KafkaCommandIntake {

    private static final Logger LOG = Logger.getLogger(KafkaCommandIntake.class);
    private final CommandRouter router;
    private final CommandConfig config;

    KafkaCommandIntake(CommandRouter router, CommandConfig config) {
        this.router = router;
        this.config = config;
    }

    @Incoming("commands")
    public CompletionStage<Void> onCommand(ConsumerRecord<String, byte[]> record) {
        byte[] value = record.value() == null ? new byte[0] : record.value();
        SendEventRequest request;
        try {
            request = SendEventRequest.parseFrom(value);
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            LOG.warnf("Unreadable record on the commands topic (%d bytes): not a SendEventRequest", value.length);
            router.rejected(SendEventRequest.getDefaultInstance(), "kafka",
                    io.grpc.Status.INVALID_ARGUMENT.withDescription("not a SendEventRequest").asRuntimeException());
            return CompletableFuture.completedFuture(null);
        }
        SendEventRequest valid;
        try {
            valid = router.validate(request.toBuilder().setAwaitResponse(false).build());
        } catch (StatusRuntimeException e) {
            router.rejected(request, "kafka", e);
            return CompletableFuture.completedFuture(null);
        }
        long now = System.currentTimeMillis();
        // a producer clock ahead of ours must not lengthen the TTL
        long requestedAt = record.timestamp() > 0 ? Math.min(record.timestamp(), now) : now;
        long staleAt = requestedAt + (valid.getTtlSeconds() > 0 ? valid.getTtlSeconds() * 1000L
                : config.kafkaMaxDelay().toMillis());
        if (staleAt <= now) {
            router.expiredBeforeSending(valid, "kafka", "requested at " + Instant.ofEpochMilli(requestedAt)
                    + (valid.getTtlSeconds() > 0 ? ", ttl_seconds " + valid.getTtlSeconds()
                            : ", no ttl_seconds (gateway.commands.kafka-max-delay " + config.kafkaMaxDelay() + ")")
                    + ": stale when read, not sent");
            return CompletableFuture.completedFuture(null);
        }
        return router.send(valid, "kafka", requestedAt).<Void> mapEmpty().otherwiseEmpty().toCompletionStage();
    }
}
