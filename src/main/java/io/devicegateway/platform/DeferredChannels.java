package io.devicegateway.platform;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import io.smallrye.reactive.messaging.ChannelRegistry;
import io.smallrye.reactive.messaging.PausableChannel;

/**
 * Starts the incoming channels that can wait (configured {@code pausable=true}, {@code pausable.initially-paused=true},
 * {@code pausable.late-subscription=true}, {@code lazy-client=true}) a second after the gateway is ready: MQTT
 * subscribed and Kafka answering. Until then such a channel has no Kafka consumer at all, so its client setup and group join stay
 * off the startup path, and a command read from Kafka can never fail only because MQTT is not connected yet.
 */
@ApplicationScoped
public class DeferredChannels {

    private static final Logger LOG = Logger.getLogger(DeferredChannels.class);

    private final ChannelRegistry channels;
    private final org.eclipse.microprofile.config.Config config;

    DeferredChannels(ChannelRegistry channels, org.eclipse.microprofile.config.Config config) {
        this.channels = channels;
        this.config = config;
    }

    /** A second after ready ({@link AfterReady}). */
    void resumeAll(@Observes AfterReady.Settled settled) {
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
}
