package io.devicegateway.ingest;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Flow;

import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;

import org.eclipse.microprofile.config.Config;
import org.eclipse.microprofile.reactive.messaging.Message;
import org.eclipse.microprofile.reactive.messaging.spi.Connector;
import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.quarkus.runtime.StartupEvent;
import io.smallrye.reactive.messaging.annotations.ConnectorAttribute;
import io.smallrye.reactive.messaging.annotations.ConnectorAttribute.Direction;
import io.smallrye.reactive.messaging.connector.InboundConnector;

/**
 * The inbound connector {@code device-gateway-mqtt}: device messages from the gateway's own MQTT connection onto a
 * channel (README: Ingest channels). It is an {@link MqttSubscription} itself: SmallRye creates the channel's publisher
 * while wiring (StartupEvent, priority {@code LIBRARY_BEFORE}), before {@code MqttConnection} collects its
 * subscriptions and connects (StartupEvent, last), so the filters are known before the broker sends anything.
 *
 * <p>The per-message work (receipt, ack, nack) is on a plain object, {@link Subscription}, that the connector produces
 * as the {@link MqttSubscription} bean: Quarkus binds an interceptor to connector classes (for their
 * {@code getPublisher}), and every call into the connector bean itself runs through it.
 *
 * <p>Each message's {@code ack()} sends its PUBACK; {@code nack()} dead-letters it as {@code processing-failed} and
 * sends the PUBACK once that is in Kafka. Messages received and not yet settled count against {@code max-in-flight} /
 * {@code max-in-flight-bytes}; at either bound the connection stops reading until both are at half. Emission honours
 * the channel's demand; messages beyond it wait in order (they are in flight, so the bound covers them).
 *
 * <p>One incoming channel per gateway: it owns the ingest filters and bounds.
 */
@Singleton
@Connector(MqttIngestConnector.NAME)
@ConnectorAttribute(name = "filters", type = "string", direction = Direction.INCOMING,
        alias = "gateway.ingest.filters", defaultValue = "devices/+/telemetry/#,devices/+/events/#",
        description = "MQTT filters to subscribe to (QoS 1, through the shared group when one is configured), comma-separated")
@ConnectorAttribute(name = "max-in-flight", type = "int", direction = Direction.INCOMING,
        alias = "gateway.ingest.max-in-flight", defaultValue = "2000",
        description = "Messages received and not yet settled (acked or dead-lettered); at the bound reading stops")
@ConnectorAttribute(name = "max-in-flight-bytes", type = "long", direction = Direction.INCOMING,
        alias = "gateway.ingest.max-in-flight-bytes", defaultValue = "33554432",
        description = "The same bound in payload bytes; reading stops at whichever bound is reached first")
public class MqttIngestConnector implements InboundConnector {

    public static final String NAME = "device-gateway-mqtt";
    private static final Logger LOG = Logger.getLogger(MqttIngestConnector.class);

    private final IngestConfig config;
    private final InFlight inFlight;
    private final IngestWriter writer;
    private volatile MqttChannelSource source;
    private final Subscription subscription = new Subscription();

    MqttIngestConnector(IngestConfig config, InFlight inFlight, IngestWriter writer) {
        this.config = config;
        this.inFlight = inFlight;
        this.writer = writer;
    }

    @Override
    public Flow.Publisher<? extends Message<?>> getPublisher(Config channel) {
        String name = channel.getOptionalValue("channel-name", String.class).orElse("?");
        if (source != null) {
            throw new IllegalStateException("connector " + NAME + " serves one incoming channel (" + source.channel()
                    + "); channel " + name + " cannot use it too");
        }
        // an attribute set on the channel wins; else its alias gateway.ingest.* (IngestConfig, same defaults)
        List<String> filters = channel.getOptionalValue("filters", String.class).map(MqttIngestConnector::split)
                .orElse(config.filters());
        int maxInFlight = channel.getOptionalValue("max-in-flight", Integer.class).orElse(config.maxInFlight());
        long maxInFlightBytes = channel.getOptionalValue("max-in-flight-bytes", Long.class)
                .orElse(config.maxInFlightBytes());
        inFlight.bounds(maxInFlight, maxInFlightBytes);
        LOG.infof("Ingest runs on the channels: %s (%s, filters %s, max-in-flight %d / %d bytes)", name, NAME,
                filters, maxInFlight, maxInFlightBytes);
        MqttChannelSource created = new MqttChannelSource(name, List.copyOf(filters),
                inFlight::abandon, subscription::nacked);
        source = created;
        return created;
    }

    /** Fails the start when no channel uses this connector: nothing would be read. */
    void checkWired(@Observes StartupEvent event) {
        if (source == null) {
            throw new IllegalStateException("no mp.messaging.incoming channel uses connector " + NAME
                    + ": ingest would subscribe to nothing");
        }
    }

    private static List<String> split(String value) {
        List<String> filters = new ArrayList<>();
        for (String f : value.split(",")) {
            if (!f.isBlank()) {
                filters.add(f.trim());
            }
        }
        return filters;
    }

    /** The ingest channel's share of the MQTT connection (MqttConnection collects it with the other subscriptions). */
    @Produces
    @Singleton
    MqttSubscription ingestSubscription() {
        return subscription;
    }

    /** Why the ingest channel no longer takes messages (cancelled downstream), or null while it does. */
    String terminated() {
        MqttChannelSource s = source;
        return s != null && s.cancelled() ? "channel " + s.channel() + " was cancelled" : null;
    }

    /** Receipt, ack and nack of every ingest message: a plain object, so no interceptor runs per message. */
    final class Subscription implements MqttSubscription {

        @Override
        public List<String> filters() {
            MqttChannelSource s = source;
            return s == null ? List.of() : s.filters();
        }

        @Override
        public int inFlight() {
            return inFlight.count();
        }

        @Override
        public void onMessage(InboundMessage message) {
            inFlight.take(message);
            source.emit(new DeviceChannelMessage<>(message, message, this));
        }

        /** A channel message's ack: the PUBACK, once. */
        void acked(InboundMessage message) {
            inFlight.ack(message);
        }

        /** A channel message's nack: a {@code processing-failed} dead letter, then the PUBACK. */
        void nacked(InboundMessage message, Throwable reason) {
            writer.processingFailed(message, reason);
        }
    }
}
