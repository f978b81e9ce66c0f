package io.devicegateway.platform;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Event;
import jakarta.enterprise.event.Observes;

import org.eclipse.microprofile.health.Readiness;

import io.devicegateway.platform.mqtt.MqttConnection;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Vertx;

/**
 * Fires {@link Settled} once, a second after the gateway is first ready (MQTT subscribed and Kafka answering), on a
 * Vert.x timer: the moment for work that can wait (the deferred channels, the JVM meters), so the first messages'
 * path (class loading, JIT, Kafka warm-up) gets the CPU first. Observers must not block.
 */
@ApplicationScoped
public class AfterReady {

    /** The gateway has been ready for a second. */
    public record Settled() {
    }

    private static final long POLL_MILLIS = 50;
    static final long AFTER_READY_MILLIS = 1_000;

    private final MqttConnection mqtt;
    private final KafkaReadiness kafka;
    private final Vertx vertx;
    private final Event<Settled> settled;
    private volatile long timer = -1;

    AfterReady(MqttConnection mqtt, @Readiness KafkaReadiness kafka, Vertx vertx, Event<Settled> settled) {
        this.mqtt = mqtt;
        this.kafka = kafka;
        this.vertx = vertx;
        this.settled = settled;
    }

    void start(@Observes StartupEvent event) {
        timer = vertx.setPeriodic(POLL_MILLIS, id -> {
            if (mqtt.ready() && kafka.reachable()) {
                vertx.cancelTimer(id);
                timer = vertx.setTimer(AFTER_READY_MILLIS, later -> {
                    timer = -1;
                    settled.fire(new Settled());
                });
            }
        });
    }

    void stop(@Observes ShutdownEvent event) {
        long id = timer;
        if (id >= 0) {
            vertx.cancelTimer(id);
        }
    }
}
