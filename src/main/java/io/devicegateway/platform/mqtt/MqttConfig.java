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

    /** {@code 5} (default) or {@code 3.1.1} for brokers without MQTT 5 (per-device order then depends on the broker). */
    @WithDefault("5")
    String protocolVersion();

    /**
     * A fixed client id for this instance (a StatefulSet ordinal, a single instance). When absent (the default) the
     * instance leases a client id from Redis (see {@link #clientIdPrefix()}), so a pod replaced under a new name
     * takes over, and any replica adopts, the broker session of a pod that is gone.
     */
    Optional<String> clientId();

    /** Leased client ids are {@code <prefix>-<n>}. Default: {@code dgw-<shared group>} (or {@code dgw-gateway}). */
    Optional<String> clientIdPrefix();

    /** How long a leased client id stays reserved after its holder stops renewing it (renewed every third of it). */
    @WithDefault("15s")
    Duration leaseTtl();

    /** How often each replica looks for broker sessions whose holder is gone, and drains them. */
    @WithDefault("10s")
    Duration adoptionInterval();

    /**
     * With leased client ids, each connection's MQTT will goes to {@code <gone-topic>/<client id>} and every replica
     * subscribes to {@code <gone-topic>/+}: when a gateway dies without disconnecting, the broker tells the others at
     * once and one of them adopts its session. Broker ACLs must let the gateway publish and subscribe there.
     */
    @WithDefault("dgw/gateway-gone")
    String goneTopic();

    /** The most leased client ids (replicas, plus sessions waiting to be adopted). */
    @WithDefault("256")
    int maxLeasedClientIds();

    /** When set, subscriptions go through {@code $share/<group>/<filter>} so replicas split the load. */
    Optional<String> sharedGroup();

    @WithDefault("30")
    int keepAliveSeconds();

    /**
     * MQTT 5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may send the gateway before it queues
     * the rest. Large by default: a stock Mosquitto keeps at most {@code max_queued_messages} (1000) queued per
     * session and silently drops QoS 1 messages beyond that, so a small window loses messages as soon as devices
     * outrun the gateway; within a large one the kernel's socket buffers hold a burst. But not the whole packet-id
     * space: Mosquitto numbers each message for a session when it routes it (queued ones too) and does not skip ids
     * still in flight, so once a session has 65,535 unacknowledged messages the next one reuses the oldest's id, and a
     * PUBACK then removes the wrong message (measured: 1,764 reused ids and 511 messages lost in one full-rate run with
     * 65535). The default keeps the window plus Mosquitto's default queue (1000) well inside the id space. Within the
     * window a current Mosquitto can still drop a message for a session whose socket falls behind by
     * max_queued_messages packets; {@link #resendDropped()} recovers those. The gateway's own memory is bounded by
     * {@code gateway.ingest.max-in-flight}: at that bound it stops reading the socket and the broker keeps the rest.
     * 1-65535; above 65535 minus the broker's session queue, ids can repeat (a warning at start).
     */
    @WithDefault("60000")
    int receiveMaximum();

    /**
     * MQTT 5: notice when the broker skips a packet id (it dropped that message on its way to the gateway and keeps
     * it in flight in the session: Mosquitto 2.0 does this whenever a client's socket queue reaches
     * {@code max_queued_messages}), stop taking messages, let the earlier ones be acknowledged, and reconnect at once
     * so that the broker resends the dropped message and everything after it, in order. Needs a broker that numbers a
     * session's messages sequentially (Mosquitto, EMQX and VerneMQ do); turn it off for one that does not.
     */
    @WithDefault("true")
    boolean resendDropped();

    /**
     * After a resend showed that the broker had dropped skipped messages for good (its session queue was full: it is
     * dropping whatever exceeds the window), further gaps within this time do not each cost a takeover, which stalls
     * the flow while the broker goes on dropping. The connection notes their ids, keeps taking messages, and checks
     * them all with one takeover when the time is up: ids the broker resends are delivered then (after later
     * messages of their devices), ids it does not are reported lost, exactly as after an immediate takeover. Not
     * while reads are paused (then a skipped message is likely one the broker still holds, and is recovered in order
     * at once). 0: a takeover for every gap.
     */
    @WithDefault("1s")
    Duration resendHoldOff();

    /**
     * MQTT 5 Maximum Packet Size the gateway accepts: the broker never sends it a larger packet (Mosquitto drops such
     * a message for the gateway's session; the publisher still got its PUBACK). Bounds what one device message can
     * cost every replica. Default 1 MiB + 64 KiB; must exceed {@code gateway.ingest.max-payload-bytes} and
     * {@code gateway.commands.max-response-bytes} by room for topic and properties, so messages just over those
     * limits still reach the gateway and are dead-lettered. MQTT 3.1.1 has no such property.
     */
    @WithDefault("1114112")
    int maxPacketSize();

    /**
     * MQTT 5 Session Expiry Interval: how long the broker keeps the gateway's session (and queues messages for it)
     * while no connection holds it. Replicas adopt orphaned sessions long before this; it bounds what a broker
     * keeps for a fleet of gateways that is entirely gone.
     */
    @WithDefault("1d")
    Duration sessionExpiry();

    /** First reconnect delay; doubles per failed attempt up to {@link #reconnectMaxDelay()}. */
    @WithDefault("200ms")
    Duration reconnectInitialDelay();

    @WithDefault("10s")
    Duration reconnectMaxDelay();

    /** TCP connect plus CONNACK. */
    @WithDefault("10s")
    Duration connectTimeout();

    /** Maximum outstanding outbound QoS 1/2 publishes (commands to devices); the broker's Receive Maximum caps it. */
    @WithDefault("1000")
    int maxOutboundInFlight();

    /** TLS with the JVM's default trust store. Prefer {@link #tlsConfigurationName()}. */
    @WithDefault("false")
    boolean ssl();

    /**
     * Name of a Quarkus TLS registry configuration ({@code quarkus.tls.<name>.*}: trust store, client certificate
     * for mTLS, hostname verification). Turns TLS on.
     */
    Optional<String> tlsConfigurationName();

    /** On shutdown, how long to wait for in-flight messages to be written and acknowledged before disconnecting. */
    @WithDefault("15s")
    Duration drainTimeout();

    /** How long an outbound publish (a command) may wait for the broker's acknowledgement. */
    @WithDefault("10s")
    Duration publishTimeout();
}
