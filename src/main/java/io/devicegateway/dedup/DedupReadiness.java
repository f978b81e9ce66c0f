package io.devicegateway.dedup;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;

import io.devicegateway.platform.kafka.GatewayKafkaConfig;

/**
 * With {@code gateway.dedup.on-unavailable=hold}, numbered messages wait while Redis does not answer: readiness turns
 * DOWN once that has lasted the writer stall timeout, like a stalled Kafka writer.
 */
@Readiness
@ApplicationScoped
public class DedupReadiness implements HealthCheck {

    @Inject
    Deduplicator dedup;
    @Inject
    GatewayKafkaConfig kafka;

    @Override
    public HealthCheckResponse call() {
        var response = HealthCheckResponse.named("dedup");
        long unavailable = dedup.unavailableMillis();
        boolean holding = dedup.enabled() && dedup.config().onUnavailable() == DedupConfig.OnUnavailable.HOLD;
        if (holding && unavailable > kafka.writer().stallTimeout().toMillis()) {
            return response.down().withData("error", "Redis (duplicate removal) unavailable for " + unavailable / 1000
                    + " s; numbered messages are held").build();
        }
        return response.up().build();
    }
}
