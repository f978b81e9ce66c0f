package io.devicegateway.ingest;

import java.util.concurrent.Flow;

import jakarta.inject.Singleton;

import org.eclipse.microprofile.config.Config;
import org.eclipse.microprofile.reactive.messaging.Message;
import org.eclipse.microprofile.reactive.messaging.spi.Connector;
import org.jboss.logging.Logger;

import io.smallrye.reactive.messaging.connector.OutboundConnector;

/**
 * The outbound connector {@code device-gateway-kafka}: writes the {@link DeviceRecord}s of a channel to Kafka through
 * {@link IngestWriter} (one ordered producer, retries in place, duplicate removal, size refusals as payload-less dead
 * letters), and acks each message once Kafka has its record (README: Ingest channels). The stock
 * {@code smallrye-kafka} sink cannot: it neither holds order across in-place retries nor removes duplicates.
 *
 * <p>It asks for unbounded demand and never blocks: {@link IngestWriter} only enqueues. What bounds memory is the
 * inbound connector's in-flight bound, which stops reading from the broker. A payload that is not a
 * {@link DeviceRecord} is nacked.
 */
@Singleton
@Connector(KafkaIngestConnector.NAME)
public class KafkaIngestConnector implements OutboundConnector {

    public static final String NAME = "device-gateway-kafka";
    private static final Logger LOG = Logger.getLogger(KafkaIngestConnector.class);

    private final IngestWriter writer;
    private volatile String terminated;

    KafkaIngestConnector(IngestWriter writer) {
        this.writer = writer;
    }

    /** Why a channel into this connector ended (failed or completed), or null while none has. */
    String terminated() {
        return terminated;
    }

    @Override
    public Flow.Subscriber<? extends Message<?>> getSubscriber(Config channel) {
        return new Sink(channel.getOptionalValue("channel-name", String.class).orElse("?"));
    }

    private final class Sink implements Flow.Subscriber<Message<?>> {
        private final String channel;

        Sink(String channel) {
            this.channel = channel;
        }

        @Override
        public void onSubscribe(Flow.Subscription subscription) {
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(Message<?> message) {
            if (!(message.getPayload() instanceof DeviceRecord record)) {
                message.nack(new IllegalArgumentException("connector " + NAME + " writes DeviceRecord payloads, not "
                        + (message.getPayload() == null ? "null" : message.getPayload().getClass().getName())));
                return;
            }
            if (!(message instanceof DeviceChannelMessage)) {
                record.message = message; // a step wrapped it: its ack chain runs once Kafka has the record
            }
            try {
                writer.write(record);
            } catch (RuntimeException e) {
                writer.processingFailed(record.source, e); // logged there
            }
        }

        @Override
        public void onError(Throwable failure) {
            // the processing step catches everything per message, so this is a bug or a user's wiring: say so loudly
            terminated = "channel " + channel + " failed: " + failure.getClass().getName();
            LOG.errorf(failure, "Channel %s failed; liveness turns DOWN so the pod is restarted (unacknowledged "
                    + "messages stay with the broker)", channel);
        }

        @Override
        public void onComplete() {
            terminated = "channel " + channel + " completed";
            LOG.infof("Channel %s completed", channel);
        }
    }
}
