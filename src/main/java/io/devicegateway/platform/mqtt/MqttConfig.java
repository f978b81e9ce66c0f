package io.devicegateway.platform.mqtt;

import java.time.Duration;
import java.util.Optional;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** How the gateway reaches the MQTT broker ({@code gateway.mqtt.*}). */
@ConfigMapping(prefix = "gateway.mqtt")
public interface MqttConfig {

    @WithDefault("localhost")
    String host();

    @WithDefault("1883")
    int port();

    Optional<String> username();

    Optional<String> password();

    /**
     * Client id of this instance. Must be unique per replica and stable across its restarts so the broker
     * keeps its persistent session. Default: {@code dgw-<hostname>-<http port>}.
     */
    Optional<String> clientId();

    /** When set, subscriptions go through {@code $share/<group>/<filter>} so replicas split the load. */
    Optional<String> sharedGroup();

    @WithDefault("30")
    int keepAliveSeconds();

    /** First reconnect delay; doubles per failed attempt up to {@link #reconnectMaxDelay()}. */
    @WithDefault("200ms")
    Duration reconnectInitialDelay();

    @WithDefault("10s")
    Duration reconnectMaxDelay();

    /** Maximum outstanding outbound QoS 1/2 publishes (commands to devices). */
    @WithDefault("1000")
    int maxOutboundInFlight();

    @WithDefault("false")
    boolean ssl();

    /** On shutdown, how long to wait for in-flight messages to be written and acknowledged before disconnecting. */
    @WithDefault("20s")
    Duration drainTimeout();

    /** How long an outbound publish (a command) may wait for the broker's acknowledgement. */
    @WithDefault("10s")
    Duration publishTimeout();
}
