package io.devicegateway.command;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.reactive.messaging.Incoming;
import org.jboss.logging.Logger;

import io.devicegateway.v1.SendEventRequest;
import io.grpc.StatusRuntimeException;

/**
 * Commands requested through Kafka: records on {@code iot.commands} (value: {@code SendEventRequest}) take the
 * same path as gRPC requests; every outcome, failures included, goes to {@code iot.command-results}. A record is
 * committed once its outcome is known. Kafka requests do not wait for responses (a response is still recorded).
 */
@ApplicationScoped
public class KafkaCommandIntake {

    private static final Logger LOG = Logger.getLogger(KafkaCommandIntake.class);
    private final CommandRouter router;

    KafkaCommandIntake(CommandRouter router) {
        this.router = router;
    }

    @Incoming("commands")
    public CompletionStage<Void> onCommand(byte[] value) {
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
        return router.send(valid, "kafka").<Void> mapEmpty().otherwiseEmpty().toCompletionStage();
    }
}
