package io.devicegateway.ingest;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Supplier;

import org.eclipse.microprofile.reactive.messaging.Message;
import org.eclipse.microprofile.reactive.messaging.Metadata;

import io.devicegateway.platform.mqtt.InboundMessage;

/**
 * A message on the ingest channels: the MQTT message it came from, and its current payload (the
 * {@link InboundMessage} itself on {@code device-messages}, a {@link DeviceRecord} on {@code device-records}).
 * {@link #ack()} sends the PUBACK (once: later acks and nacks do nothing); {@link #nack(Throwable)} dead-letters the
 * original message as {@code processing-failed} and sends the PUBACK once that dead letter is in Kafka.
 *
 * <p>Cheap on purpose: no metadata, a shared completed stage, and {@link #withPayload} makes one small object (the
 * interface's default would copy metadata and wrap ack and nack in new functions for every message).
 */
final class DeviceChannelMessage<T> implements Message<T> {

    /** Completed, and minimal: nobody can complete or obtrude it. */
    private static final CompletionStage<Void> DONE = CompletableFuture.completedStage(null);

    final InboundMessage source;
    private final T payload;
    private final MqttIngestConnector.Subscription owner;

    DeviceChannelMessage(InboundMessage source, T payload, MqttIngestConnector.Subscription owner) {
        this.source = source;
        this.payload = payload;
        this.owner = owner;
    }

    @Override
    public T getPayload() {
        return payload;
    }

    @Override
    public Metadata getMetadata() {
        return Metadata.empty();
    }

    @Override
    public <P> Message<P> withPayload(P newPayload) {
        return new DeviceChannelMessage<>(source, newPayload, owner);
    }

    @Override
    public CompletionStage<Void> ack() {
        owner.acked(source);
        return DONE;
    }

    @Override
    public CompletionStage<Void> ack(Metadata metadata) {
        return ack();
    }

    @Override
    public CompletionStage<Void> nack(Throwable reason) {
        owner.nacked(source, reason);
        return DONE;
    }

    @Override
    public CompletionStage<Void> nack(Throwable reason, Metadata metadata) {
        return nack(reason);
    }

    @Override
    public Supplier<CompletionStage<Void>> getAck() {
        return this::ack;
    }

    @Override
    public Function<Metadata, CompletionStage<Void>> getAckWithMetadata() {
        return this::ack;
    }

    @Override
    public Function<Throwable, CompletionStage<Void>> getNack() {
        return this::nack;
    }

    @Override
    public BiFunction<Throwable, Metadata, CompletionStage<Void>> getNackWithMetadata() {
        return this::nack;
    }
}
