package io.devicegateway.ingest;

import java.util.List;

import jakarta.inject.Singleton;

import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttSubscription;

/**
 * The direct ingest path ({@code gateway.ingest.path=direct}): MQTT to Kafka without the reactive-messaging channels,
 * kept to measure what the channel layer costs (README: Ingest channels). Same steps, same code, same guarantees as
 * the channels: {@link IngestPipeline} then {@link IngestWriter}, in-flight work bounded by {@link InFlight}.
 */
@Singleton
public class TelemetryIngest implements MqttSubscription {

    private static final Logger LOG = Logger.getLogger(TelemetryIngest.class);

    private final boolean active;
    private final List<String> filters;
    private final IngestPipeline pipeline;
    private final IngestWriter writer;
    private final InFlight inFlight;

    TelemetryIngest(IngestConfig config, IngestPipeline pipeline, IngestWriter writer, InFlight inFlight) {
        this.active = config.path() == IngestConfig.Path.DIRECT;
        this.filters = active ? config.filters() : List.of();
        this.pipeline = pipeline;
        this.writer = writer;
        this.inFlight = inFlight;
        if (active) {
            LOG.info("Ingest runs on the direct path (gateway.ingest.path=direct): no reactive-messaging channels");
        }
    }

    /** Nothing unless this is the configured path: then the channels' connector subscribes instead. */
    @Override
    public List<String> filters() {
        return filters;
    }

    @Override
    public int inFlight() {
        return active ? inFlight.count() : 0;
    }

    @Override
    public void onMessage(InboundMessage message) {
        inFlight.take(message);
        try {
            DeviceRecord record = pipeline.process(message);
            if (record == null) {
                inFlight.ack(message); // a device function dropped it
            } else {
                writer.write(record);
            }
        } catch (Throwable e) {
            // as the channels' nack: a processing-failed dead letter, and the next message goes on
            writer.processingFailed(message, e);
        }
    }
}
