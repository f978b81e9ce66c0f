package io.devicegateway.ingest;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.reactive.messaging.Incoming;
import org.eclipse.microprofile.reactive.messaging.Message;
import org.eclipse.microprofile.reactive.messaging.Outgoing;

import io.devicegateway.platform.mqtt.InboundMessage;
import io.smallrye.common.annotation.NonBlocking;
import io.smallrye.mutiny.Multi;
import io.smallrye.mutiny.operators.multi.AbstractMultiOperator;
import io.smallrye.mutiny.operators.multi.MultiOperatorProcessor;
import io.smallrye.mutiny.subscription.MultiSubscriber;

/**
 * The ingest's processing step between the channels {@code device-messages} (MQTT, {@code device-gateway-mqtt}) and
 * {@code device-records} (Kafka, {@code device-gateway-kafka}): {@link IngestPipeline} (validation, envelope, headers,
 * MQTT 5 mapping, sequence, device functions) on each message. The output keeps the input's ack
 * ({@code withPayload}); a message a function dropped is acked and skipped; anything thrown here (a device function's
 * own exceptions are already {@code function-failed} dead letters, so: a VM error, a bug) nacks the message (a
 * {@code processing-failed} dead letter) and the stream goes on.
 *
 * <p>Stream-shaped on purpose: in this SmallRye version a per-message method ({@code Message<O> m(Message<I>)}) costs a
 * Uni and a Multi per message, a thrown exception fails the whole stream, and a null return skips the message without
 * acking it (the MANUAL strategy of message methods; only post-processing acks a skipped one); and a typed parameter
 * ({@code Multi<Message<InboundMessage>>}) adds a Uni-per-message converter step; the wildcard avoids it (SmallRye
 * then logs SRMSG00233 "unable to extract the ingested payload type" at build time: expected). Here the
 * method runs once at wiring and each message costs one call of one operator, on the MQTT event loop.
 *
 * <p>The operator is our own ({@link Step}) rather than {@code map} + {@code select().where}: Mutiny hands every
 * function given to its operators to the installed interceptors, and Quarkus' context-propagation interceptor wraps
 * each in a contextual function that captures and restores thread contexts for every item (an object and a context
 * switch per message per operator; measured ~2 % of the gateway's CPU at QoS 0). Nothing here uses those contexts.
 */
@ApplicationScoped
public class IngestChannels {

    /** MQTT → processing ({@code mp.messaging.incoming.device-messages.*}). */
    public static final String DEVICE_MESSAGES = "device-messages";
    /** Processing → Kafka ({@code mp.messaging.outgoing.device-records.*}). */
    public static final String DEVICE_RECORDS = "device-records";

    /** Marks a message that was settled here and is not passed on. */
    private static final Message<?> SKIPPED = Message.of("skipped");

    private final IngestPipeline pipeline;

    IngestChannels(IngestPipeline pipeline) {
        this.pipeline = pipeline;
    }

    @Incoming(DEVICE_MESSAGES)
    @Outgoing(DEVICE_RECORDS)
    @NonBlocking
    public Multi<Message<?>> process(Multi<Message<?>> messages) {
        return new Step(messages);
    }

    private Message<?> step(Message<?> message) {
        try {
            if (!(message.getPayload() instanceof InboundMessage inbound)) {
                throw new IllegalArgumentException("channel " + DEVICE_MESSAGES + " carries InboundMessage payloads");
            }
            DeviceRecord record = pipeline.process(inbound);
            if (record == null) {
                message.ack(); // dropped by a device function
                return SKIPPED;
            }
            return message.withPayload(record);
        } catch (Throwable e) {
            // never let one message fail the stream (Mutiny would end it): this message gets its defined end instead
            message.nack(e);
            return SKIPPED;
        }
    }

    /** {@link #step} on each message; what it settled itself is not passed on (and replaced by one more request). */
    private final class Step extends AbstractMultiOperator<Message<?>, Message<?>> {

        Step(Multi<Message<?>> upstream) {
            super(upstream);
        }

        @Override
        public void subscribe(MultiSubscriber<? super Message<?>> downstream) {
            upstream.subscribe().withSubscriber(new StepProcessor(downstream));
        }
    }

    private final class StepProcessor extends MultiOperatorProcessor<Message<?>, Message<?>> {

        /** The downstream asked for everything (the Kafka connector does): a skipped message needs no new request. */
        private boolean unbounded;

        StepProcessor(MultiSubscriber<? super Message<?>> downstream) {
            super(downstream);
        }

        @Override
        public void request(long n) {
            if (n == Long.MAX_VALUE) {
                unbounded = true;
            }
            super.request(n);
        }

        @Override
        public void onItem(Message<?> item) {
            if (isDone()) {
                return;
            }
            Message<?> out = step(item);
            if (out != SKIPPED) {
                downstream.onItem(out);
            } else if (!unbounded) {
                super.request(1);
            }
        }
    }
}
