package io.devicegateway.ingest;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Liveness;
import org.eclipse.microprofile.reactive.messaging.spi.Connector;

/**
 * DOWN once an ingest channel has ended (a failure that escaped every per-message guard, or a cancellation): the
 * stream cannot be resubscribed, every later message would wait unacknowledged at the in-flight bound, and readiness
 * would not help (the broker, not Kubernetes, routes MQTT traffic). A restart lets the broker redeliver.
 */
@Liveness
@ApplicationScoped
public class IngestChannelsLiveness implements HealthCheck {

    private final MqttIngestConnector inbound;
    private final KafkaIngestConnector outbound;

    IngestChannelsLiveness(@Connector(MqttIngestConnector.NAME) MqttIngestConnector inbound,
            @Connector(KafkaIngestConnector.NAME) KafkaIngestConnector outbound) {
        this.inbound = inbound;
        this.outbound = outbound;
    }

    @Override
    public HealthCheckResponse call() {
        var response = HealthCheckResponse.named("ingest-channels");
        String why = inbound.terminated();
        if (why == null) {
            why = outbound.terminated();
        }
        return why == null ? response.up().build() : response.down().withData("error", why).build();
    }
}
