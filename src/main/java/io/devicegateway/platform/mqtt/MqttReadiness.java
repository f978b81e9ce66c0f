package io.devicegateway.platform.mqtt;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;

/** Ready only while the broker connection is up and every subscription is granted. */
@Readiness
@ApplicationScoped
public class MqttReadiness implements HealthCheck {

    private final MqttConnection connection;

    MqttReadiness(MqttConnection connection) {
        this.connection = connection;
    }

    @Override
    public HealthCheckResponse call() {
        return HealthCheckResponse.named("mqtt").status(connection.ready())
                .withData("client-id", String.valueOf(connection.clientId()))
                .withData("instance", connection.instanceId()).withData("state", connection.problem()).build();
    }
}
