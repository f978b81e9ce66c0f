package io.devicegateway.platform;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.eclipse.microprofile.health.Readiness;
import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.MqttConnection;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.smallrye.reactive.messaging.ChannelRegistry;
import io.smallrye.reactive.messaging.PausableChannel;
import io.vertx.core.Vertx;

/**
 * Starts the incoming channels that can wait (configured {@code pausable=true}, {@code pausable.initially-paused=true},
 * {@code pausable.late-subscription=true}, {@code lazy-client=true}) a second after the gateway is ready: MQTT
 * subscribed and Kafka answering. Until then such a channel has no Kafka consumer at all, so its client setup and group join stay
 * off the startup path, and a command read from Kafka can never fail only because MQTT is not connected yet.
 */
@ApplicationScoped
public class DeferredChannels {

    private static final Logger LOG = Logger.getLogger(DeferredChannels.class);
    private static final long POLL_MILLIS = 50;
    /** After ready: the first messages' path (class loading, JIT, Kafka warm-up) gets the CPU first. */
    private static final long AFTER_READY_MILLIS = 1_000;

    private final ChannelRegistry channels;
    private final MqttConnection mqtt;
    private final KafkaReadiness kafka;
    private final Vertx vertx;
    private volatile long timer = -1;

    private final org.eclipse.microprofile.config.Config config;

    DeferredChannels(ChannelRegistry channels, MqttConnection mqtt, @Readiness KafkaReadiness kafka, Vertx vertx,
            org.eclipse.microprofile.config.Config config) {
        this.channels = channels;
        this.config = config;
        this.mqtt = mqtt;
        this.kafka = kafka;
        this.vertx = vertx;
    }

    void start(@Observes StartupEvent event) {
        timer = vertx.setPeriodic(POLL_MILLIS, id -> {
            if (mqtt.ready() && kafka.reachable()) {
                vertx.cancelTimer(id);
                timer = vertx.setTimer(AFTER_READY_MILLIS, later -> {
                    timer = -1;
                    resumeAll();
                });
            }
        });
    }

    private void resumeAll() {
        for (String name : channels.getIncomingNames()) {
            PausableChannel channel = channels.getPausable(name);
            // only channels configured to wait for this; one that other code pauses (back-pressure) is left to it
            boolean deferred = config.getOptionalValue("mp.messaging.incoming." + name + ".pausable.initially-paused",
                    Boolean.class).orElse(false);
            if (channel != null && deferred && channel.isPaused()) {
                LOG.debugf("Gateway ready: starting channel %s", name);
                channel.resume();
            }
        }
    }

    void stop(@Observes ShutdownEvent event) {
        long id = timer;
        if (id >= 0) {
            vertx.cancelTimer(id);
        }
    }
}
