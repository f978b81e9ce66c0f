package io.devicegateway.platform.mqtt;

import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.jboss.logging.Logger;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.mqtt.MqttConnAckMessage;
import io.netty.handler.codec.mqtt.MqttConnectReturnCode;
import io.netty.handler.codec.mqtt.MqttDecoder;
import io.netty.handler.codec.mqtt.MqttEncoder;
import io.netty.handler.codec.mqtt.MqttFixedHeader;
import io.netty.handler.codec.mqtt.MqttMessage;
import io.netty.handler.codec.mqtt.MqttMessageBuilders;
import io.netty.handler.codec.mqtt.MqttMessageIdVariableHeader;
import io.netty.handler.codec.mqtt.MqttMessageType;
import io.netty.handler.codec.mqtt.MqttProperties;
import io.netty.handler.codec.mqtt.MqttPubReplyMessageVariableHeader;
import io.netty.handler.codec.mqtt.MqttPublishMessage;
import io.netty.handler.codec.mqtt.MqttQoS;
import io.netty.handler.codec.mqtt.MqttReasonCodeAndPropertiesVariableHeader;
import io.netty.handler.codec.mqtt.MqttSubAckMessage;
import io.netty.handler.codec.mqtt.MqttSubscriptionOption;
import io.netty.handler.codec.mqtt.MqttUnsubAckMessage;
import io.netty.handler.codec.mqtt.MqttVersion;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.impl.NetSocketInternal;

/**
 * One MQTT connection (5 or 3.1.1) over a Vert.x socket with Netty's MQTT codec. Everything runs on one event-loop
 * context; acknowledgements may be requested from any thread and are written in batches with one flush.
 *
 * <p>Why our own protocol handling rather than a client library: the gateway needs exactly the parts that decide
 * its guarantees under its control: PUBACK only when asked (never on receipt), the MQTT 5 Receive Maximum as its
 * inbound window, reads stopped at the socket for QoS 0 floods, the DUP flag, the broker's Receive Maximum for
 * outbound commands, session expiry on DISCONNECT, and everything on the Vert.x event loop Quarkus already runs
 * (no extra threads). Netty's codec does the encoding.
 */
final class MqttLink {

    private static final Logger LOG = Logger.getLogger(MqttLink.class);
    private static final MqttFixedHeader PUBREC = new MqttFixedHeader(MqttMessageType.PUBREC, false,
            MqttQoS.AT_MOST_ONCE, false, 2);
    private static final MqttFixedHeader PUBREL = new MqttFixedHeader(MqttMessageType.PUBREL, false,
            MqttQoS.AT_LEAST_ONCE, false, 2);
    private static final MqttFixedHeader PUBCOMP = new MqttFixedHeader(MqttMessageType.PUBCOMP, false,
            MqttQoS.AT_MOST_ONCE, false, 2);
    private static final MqttMessage PINGREQ = new MqttMessage(new MqttFixedHeader(MqttMessageType.PINGREQ, false,
            MqttQoS.AT_MOST_ONCE, false, 0));
    /**
     * The decoder takes the largest packet MQTT allows: an MQTT 5 broker honours the Maximum Packet Size we send in
     * CONNECT, and a smaller decoder limit would wedge the connection on a redelivered oversize QoS 1 message.
     */
    static final int MAX_PACKET_SIZE = 268_435_455;

    /** What the owner of the link is told. Called on the link's context. */
    interface Listener {
        void onPublish(InboundMessage message);

        void onClosed(MqttLink link, String why);

        /**
         * The broker skipped packet ids {@code first}..{@code last}: it dropped those messages on their way to us. The
         * link has stopped taking messages, waits until every earlier one is acknowledged, then disconnects keeping the
         * session ({@link #closedForResend()}); reconnecting at once has the broker resend the rest in order. During a
         * resend hold-off ({@link #resendHoldOffMillis}) it notes the ids instead and takes messages on.
         */
        default void onBrokerDropped(MqttLink link, int first, int last) {
        }

        /**
         * The resend after a takeover did not include {@code count} skipped ids (a gap's, or those noted during a
         * resend hold-off): the broker dropped those messages for good (its session queue was full when it routed
         * them: Mosquitto numbers a message before it decides to drop it), so no reconnect brings them back.
         */
        default void onBrokerLost(MqttLink link, int count) {
        }

        /** {@code count} ids noted during a resend hold-off were resent by the broker and delivered late. */
        default void onBrokerResentLate(MqttLink link, int count) {
        }

        /**
         * Whether a gap found now may wait (milliseconds left of the resend hold-off: note the ids, take messages on,
         * check them with one takeover when it ends) or needs a takeover at once (0).
         */
        default long resendHoldOffMillis(MqttLink link) {
            return 0;
        }

        /**
         * Whether the listener takes this link's session over with a new connection for the resend: then it opens that
         * connection's socket now, the link sends a PINGREQ as a barrier and calls {@link #onResendBarrier} at its
         * PINGRESP, and the new connection's CONNECT takes the session over from this one (Mosquitto moves it without a
         * moment offline and, for a session that outlives its connection, without publishing the will). While a
         * session has no connection Mosquitto counts its in-flight messages against max_queued_messages (1000) and
         * drops every new message for it at once: a DISCONNECT and a reconnect lost the messages of those milliseconds.
         * False (the default): the link sends DISCONNECT and closes.
         */
        default boolean takesOverForResend(MqttLink link) {
            return false;
        }

        /**
         * The broker has answered the barrier PINGREQ: it handles one connection's packets in order, so every PUBACK
         * this link sent is applied. Send the next connection's CONNECT now.
         */
        default void onResendBarrier(MqttLink link) {
        }
    }

    /** How to connect. */
    record Settings(String clientId, boolean mqtt5, boolean cleanStart, String username, String password,
            int keepAliveSeconds, long sessionExpirySeconds, int receiveMaximum, int maxPacketSize,
            int maxOutboundInFlight, long connectTimeoutMillis, String willTopic, String willPayload,
            boolean resendDropped, String probeTopic) {
    }

    /** The broker's CONNACK. */
    record ConnAck(boolean sessionPresent, int serverReceiveMaximum) {
    }

    /** A refused CONNECT: the reason code says why (bad credentials, not authorized, …). */
    static final class RefusedException extends RuntimeException {
        final int reasonCode;

        RefusedException(int reasonCode, String text) {
            super(text);
            this.reasonCode = reasonCode;
        }
    }

    /** An outbound PUBLISH waiting for a window slot or for the broker's acknowledgement. */
    private static final class Outbound {
        final String topic;
        final byte[] payload;
        final int qos;
        final boolean retain;
        final MqttProperties properties;
        final Promise<Void> done;
        int packetId;
        boolean released; // QoS 2: PUBREC received, PUBREL sent

        Outbound(String topic, byte[] payload, int qos, boolean retain, MqttProperties properties, Promise<Void> done) {
            this.topic = topic;
            this.payload = payload;
            this.qos = qos;
            this.retain = retain;
            this.properties = properties;
            this.done = done;
        }
    }

    private final Vertx vertx;
    private final Context context;
    private final NetClient netClient;
    private final Settings settings;
    private final Listener listener;
    private final String host;
    private final int port;

    // all of these are touched on the context only
    private NetSocketInternal socket;
    private ChannelHandlerContext channel;
    private Promise<ConnAck> connecting;
    private boolean connected;
    private boolean closed;
    private boolean readsPaused;
    private long lastReadNanos;
    private long lastWriteNanos;
    private long keepAliveTimer = -1;
    private int nextPacketId = 1;
    private int outboundWindow;
    private final Map<Integer, Outbound> outboundInFlight = new HashMap<>();
    private final ArrayDeque<Outbound> outboundWaiting = new ArrayDeque<>();
    private final Map<Integer, Promise<List<Integer>>> pendingSubscribes = new HashMap<>();
    private final Map<Integer, Promise<Void>> pendingUnsubscribes = new HashMap<>();
    /**
     * Broker-drop detection (MQTT 5, QoS 1). A broker numbers the messages it sends one session in order (Mosquitto,
     * EMQX and VerneMQ allocate packet ids sequentially), so a skipped id is a message it dropped on the way: every
     * Mosquitto 2.0 since the CVE-2023-28366 fix frees any packet for a client whose socket queue holds
     * max_queued_messages (1,000 by default) packets, and keeps the message in flight in the session, resent only on
     * the next connection. The link then takes nothing more (later messages would overtake the dropped ones), lets
     * the earlier ones finish and acknowledges them, and disconnects keeping the session: the broker resends, in
     * order, exactly the dropped message and everything after it, which are contiguous ids.
     */
    private int expectedPacketId = -1;
    /** Expect the first QoS 1 message of a connection to start the sequence even if it is a redelivery (DUP). */
    private boolean sequenceFromRedelivery;
    /** The first packet id the previous connection found skipped: the resend should start with it (-1: none). */
    private int resendFrom = -1;
    /** The first id of the gap this link found (for the next connection's check), -1 before any. */
    private int firstSkipped = -1;
    private boolean dropping;
    private boolean closedForResend;
    /**
     * Gaps noted during a resend hold-off (see {@link Listener#resendHoldOffMillis}): their ids, how many, the first,
     * and the timer that starts their check. Bounded: at most {@link #MAX_DEFERRED} ids and a span of
     * {@link #MAX_DEFERRED_SPAN} ids, so that no id can come round again before the check.
     */
    private java.util.BitSet deferred;
    private int deferredCount;
    private int firstDeferred = -1;
    private long deferredTimer = -1;
    static final int MAX_DEFERRED = 20_000;
    static final int MAX_DEFERRED_SPAN = 30_000;
    /** Reads were paused on this connection at some point: no gap may wait for the hold-off's check. */
    private boolean readsWerePaused;
    /** On the connection after a takeover: the previous one's noted ids not yet seen in the resend. */
    private java.util.BitSet deferredToCheck;
    private int deferredToCheckCount;
    private int resentLate;
    /** PINGREQs sent and PINGRESPs read; the barrier is passed when the answers reach {@code barrierPing}. */
    private long pingsSent;
    private long pingsAnswered;
    private long barrierPing = -1;
    /** The session went to the next connection: the broker's DISCONNECT (session taken over) is expected. */
    private boolean handedOver;
    /**
     * A drop at the end of a burst shows no gap until the next message. So once the inbound flow pauses, the link
     * publishes an empty QoS 1 message to a topic only its own session subscribes to ({@code probeTopic}): it comes
     * back with the broker's next packet id and reveals any skipped before it.
     */
    private boolean receivedSinceProbe;
    private long probeTimer = -1;
    static final long PROBE_QUIET_NANOS = 300_000_000L;
    /** Inbound QoS 2 packet ids whose PUBREC went out, waiting for PUBREL. */
    private final java.util.Set<Integer> inboundQos2 = new java.util.HashSet<>();

    // acknowledgements requested from any thread, written on the context in batches
    /**
     * Acks handed over from the Kafka I/O thread, as {@code packetId << 2 | qos}: a multi-producer single-consumer
     * queue (one atomic exchange per offer, no node per element) instead of a ConcurrentLinkedQueue of int[].
     */
    private final java.util.Queue<Integer> acks = io.netty.util.internal.PlatformDependent.newMpscQueue();
    /** First bytes of PUBACK and PUBREC (packet type, no flags); a batch buffer starts at 256 acknowledgements. */
    private static final int PUBACK_BYTE = MqttMessageType.PUBACK.value() << 4;
    private static final int PUBREC_BYTE = MqttMessageType.PUBREC.value() << 4;
    private static final int ACK_BUFFER_BYTES = 1024;
    private final java.util.concurrent.atomic.AtomicBoolean ackScheduled = new java.util.concurrent.atomic.AtomicBoolean();
    private final java.util.concurrent.atomic.AtomicInteger unacked = new java.util.concurrent.atomic.AtomicInteger();

    MqttLink(Vertx vertx, Context context, NetClient netClient, String host, int port, Settings settings,
            Listener listener) {
        this.vertx = vertx;
        this.context = context;
        this.netClient = netClient;
        this.host = host;
        this.port = port;
        this.settings = settings;
        this.listener = listener;
    }

    String clientId() {
        return settings.clientId();
    }

    boolean mqtt5() {
        return settings.mqtt5();
    }

    /** Received QoS 1/2 messages not yet acknowledged on this connection. */
    int unacked() {
        return unacked.get();
    }

    boolean connected() {
        return connected && !closed;
    }

    /** Opens the socket and sends CONNECT; completes with the CONNACK. Call on the context. */
    Future<ConnAck> connect() {
        return connect(Future.succeededFuture());
    }

    /**
     * Opens the socket now and sends CONNECT once {@code loginWhen} has succeeded (a failure closes the link);
     * completes with the CONNACK. The connect timeout covers opening the socket, and then the CONNACK from CONNECT on.
     * Call on the context; complete {@code loginWhen} on it too.
     */
    Future<ConnAck> connect(Future<Void> loginWhen) {
        connecting = Promise.promise();
        Promise<ConnAck> result = connecting;
        long[] timer = { vertx.setTimer(settings.connectTimeoutMillis(), id -> {
            if (socket == null && !closed) {
                fail("no connection within " + settings.connectTimeoutMillis() + " ms");
            }
        }) };
        result.future().onComplete(done -> vertx.cancelTimer(timer[0]));
        netClient.connect(port, host).onComplete(ar -> {
            vertx.cancelTimer(timer[0]);
            if (ar.failed()) {
                closed = true;
                result.tryFail(ar.cause());
                return;
            }
            socket = (NetSocketInternal) ar.result();
            channel = socket.channelHandlerContext();
            channel.pipeline().addBefore("handler", "mqttEncoder", MqttEncoder.INSTANCE);
            channel.pipeline().addBefore("handler", "mqttDecoder", new MqttDecoder(MAX_PACKET_SIZE));
            socket.messageHandler(this::onMessage);
            socket.exceptionHandler(e -> {
                LOG.debugf("MQTT socket error (%s): %s", settings.clientId(), e.toString());
                // kept for the close reason: e.g. the broker's TLS alert for a missing or rejected client
                // certificate, which under TLS 1.3 arrives only after our side of the handshake has completed
                socketError = e;
            });
            socket.closeHandler(v -> onSocketClosed());
            if (closed) { // disconnected while connecting
                socket.close();
                return;
            }
            loginWhen.onComplete(go -> {
                if (closed) {
                    result.tryFail(new IllegalStateException("MQTT connection closed before CONNECT: " + lastCloseReason));
                    return;
                }
                if (go.failed()) {
                    fail("not logging in: " + go.cause().getMessage());
                    return;
                }
                timer[0] = vertx.setTimer(settings.connectTimeoutMillis(), id -> {
                    if (!connected && !closed) {
                        fail("no CONNACK within " + settings.connectTimeoutMillis() + " ms");
                    }
                });
                lastReadNanos = System.nanoTime();
                write(connectMessage(), true);
            });
        });
        return result.future();
    }

    /** Closed, by either side (or never opened). */
    boolean isClosed() {
        return closed;
    }

    private MqttMessage connectMessage() {
        MqttMessageBuilders.ConnectBuilder connect = MqttMessageBuilders.connect()
                .protocolVersion(settings.mqtt5() ? MqttVersion.MQTT_5 : MqttVersion.MQTT_3_1_1)
                .clientId(settings.clientId())
                .cleanSession(settings.cleanStart())
                .keepAlive(settings.keepAliveSeconds());
        if (settings.willTopic() != null) {
            // published by the broker only if this connection dies without DISCONNECT: other replicas adopt the session
            connect.willFlag(true).willTopic(settings.willTopic()).willQoS(MqttQoS.AT_LEAST_ONCE).willRetain(false)
                    .willMessage(settings.willPayload().getBytes(StandardCharsets.UTF_8));
            if (settings.mqtt5()) {
                connect.willProperties(MqttProperties.NO_PROPERTIES);
            }
        }
        if (settings.username() != null) {
            connect.hasUser(true).username(settings.username());
        }
        if (settings.password() != null) {
            connect.hasPassword(true).password(settings.password().getBytes(StandardCharsets.UTF_8));
        }
        if (settings.mqtt5()) {
            MqttProperties properties = new MqttProperties();
            properties.add(new MqttProperties.IntegerProperty(
                    MqttProperties.MqttPropertyType.SESSION_EXPIRY_INTERVAL.value(),
                    (int) Math.min(settings.sessionExpirySeconds(), 0xFFFF_FFFFL)));
            properties.add(new MqttProperties.IntegerProperty(MqttProperties.MqttPropertyType.RECEIVE_MAXIMUM.value(),
                    settings.receiveMaximum()));
            // the broker must not send us anything larger: one huge device message cannot cost every replica its memory
            properties.add(new MqttProperties.IntegerProperty(
                    MqttProperties.MqttPropertyType.MAXIMUM_PACKET_SIZE.value(), settings.maxPacketSize()));
            connect.properties(properties);
        }
        return connect.build();
    }

    private void onMessage(Object msg) {
        if (!(msg instanceof MqttMessage message)) {
            return;
        }
        lastReadNanos = System.nanoTime();
        if (message.decoderResult().isFailure()) {
            release(message);
            fail("undecodable packet from the broker: " + message.decoderResult().cause());
            return;
        }
        MqttMessageType type = message.fixedHeader().messageType();
        switch (type) {
            case CONNACK -> onConnAck((MqttConnAckMessage) message);
            case PUBLISH -> onPublish((MqttPublishMessage) message);
            case PUBACK -> completeOutbound(packetId(message), reasonCode(message));
            case PUBREC -> onPubRec(packetId(message), reasonCode(message));
            case PUBREL -> {
                int id = packetId(message);
                inboundQos2.remove(id);
                write(new MqttMessage(PUBCOMP, MqttMessageIdVariableHeader.from(id)), true);
            }
            case PUBCOMP -> completeOutbound(packetId(message), reasonCode(message));
            case SUBACK -> {
                MqttSubAckMessage subAck = (MqttSubAckMessage) message;
                Promise<List<Integer>> p = pendingSubscribes.remove(subAck.variableHeader().messageId());
                if (p != null) {
                    p.tryComplete(subAck.payload().reasonCodes());
                }
            }
            case UNSUBACK -> {
                Promise<Void> p = pendingUnsubscribes.remove(((MqttUnsubAckMessage) message).variableHeader().messageId());
                if (p != null) {
                    p.tryComplete();
                }
            }
            case PINGRESP -> {
                pingsAnswered++;
                if (barrierPing > 0 && pingsAnswered >= barrierPing) {
                    barrierPing = -1;
                    handedOver = true;
                    listener.onResendBarrier(this);
                }
            }
            case DISCONNECT -> {
                Object header = message.variableHeader();
                String reason = header instanceof MqttReasonCodeAndPropertiesVariableHeader h
                        ? "0x" + Integer.toHexString(h.reasonCode() & 0xFF) : "none";
                if (handedOver) {
                    close("the next connection took the session over (reason " + reason + ")");
                } else {
                    fail("the broker disconnected us (reason " + reason + ")");
                }
            }
            default -> LOG.debugf("Ignoring MQTT %s", type);
        }
    }

    private static boolean sessionPresent(MqttConnAckMessage connAck) {
        return connAck.variableHeader().isSessionPresent();
    }

    private void onConnAck(MqttConnAckMessage connAck) {
        MqttConnectReturnCode code = connAck.variableHeader().connectReturnCode();
        if (code != MqttConnectReturnCode.CONNECTION_ACCEPTED) {
            int reason = code.byteValue() & 0xFF;
            RefusedException refused = new RefusedException(reason, "broker refused the connection: " + code
                    + " (0x" + Integer.toHexString(reason) + ")");
            Promise<ConnAck> p = connecting;
            close("refused: " + code);
            if (p != null) {
                p.tryFail(refused);
            }
            return;
        }
        int serverReceiveMaximum = 65_535;
        int keepAlive = settings.keepAliveSeconds();
        if (settings.mqtt5()) {
            MqttProperties props = connAck.variableHeader().properties();
            MqttProperties.MqttProperty<?> rm = props.getProperty(MqttProperties.MqttPropertyType.RECEIVE_MAXIMUM.value());
            if (rm != null && rm.value() instanceof Integer v && v > 0) {
                serverReceiveMaximum = v;
            }
            MqttProperties.MqttProperty<?> ka = props.getProperty(MqttProperties.MqttPropertyType.SERVER_KEEP_ALIVE.value());
            if (ka != null && ka.value() instanceof Integer v) {
                keepAlive = v;
            }
        }
        outboundWindow = Math.max(1, Math.min(serverReceiveMaximum, settings.maxOutboundInFlight()));
        connected = true;
        startKeepAlive(keepAlive);
        startProbes();
        if (deferredToCheckCount > 0 && settings.probeTopic() != null && sessionPresent(connAck)) {
            // the check ends at the first id past the noted ones: with the devices quiet the resend may hold none,
            // so a probe (the session's next id, after the resend) brings one
            publish(settings.probeTopic(), new byte[0], 1, false, null)
                    .onFailure(e -> LOG.debugf("Sequence probe on %s failed: %s", settings.clientId(), e.toString()));
        }
        Promise<ConnAck> p = connecting;
        connecting = null;
        if (p != null) {
            p.tryComplete(new ConnAck(connAck.variableHeader().isSessionPresent(), serverReceiveMaximum));
        }
    }

    private void onPublish(MqttPublishMessage publish) {
        ByteBuf buf = publish.payload();
        byte[] payload = new byte[buf.readableBytes()];
        buf.getBytes(buf.readerIndex(), payload);
        int qos = publish.fixedHeader().qosLevel().value();
        int packetId = publish.variableHeader().packetId();
        String topic = publish.variableHeader().topicName();
        MqttProperties properties = publish.variableHeader().properties();
        boolean dup = publish.fixedHeader().isDup();
        boolean retain = publish.fixedHeader().isRetain();
        publish.release();
        if (qos == 1 && settings.resendDropped() && settings.mqtt5() && !inSequence(packetId, dup)) {
            return; // left in the broker's session: it resends it after the reconnect
        }
        if (qos == 2 && inboundQos2.contains(packetId)) {
            // a QoS 2 redelivery we already took: it must not be processed twice; the PUBREC is re-sent
            write(new MqttMessage(PUBREC, MqttMessageIdVariableHeader.from(packetId)), true);
            return;
        }
        if (qos > 0) {
            unacked.incrementAndGet();
            if (settings.probeTopic() != null) {
                receivedSinceProbe |= !topic.equals(settings.probeTopic());
            }
        }
        // not properties.isEmpty(): Netty keeps user properties apart and isEmpty() ignores them, so a message whose
        // only properties are user properties would lose them
        listener.onPublish(new InboundMessage(this, topic, payload, qos, packetId, dup, retain,
                properties == null ? MqttProperties.NO_PROPERTIES : properties));
    }

    /**
     * Whether a QoS 1 message continues the broker's packet-id sequence. The first message of a connection starts
     * it; redeliveries (DUP) after an ordinary reconnect are not checked, since acknowledgements that went out in
     * Kafka's order leave holes in the broker's in-flight list; after a reconnect for resend there are none.
     */
    private boolean inSequence(int packetId, boolean dup) {
        if (dropping) {
            return false;
        }
        if (expectedPacketId < 0) {
            if (dup && !sequenceFromRedelivery) {
                return true;
            }
            if (deferredToCheckCount > 0) {
                if (deferredToCheck.get(packetId)) {
                    // the broker still held it: its resend comes first, in id order; delivered now, late
                    deferredToCheck.clear(packetId);
                    deferredToCheckCount--;
                    resentLate++;
                    return true;
                }
                finishDeferredCheck();
            }
            if (sequenceFromRedelivery && resendFrom > 0 && packetId != resendFrom) {
                // every message before the gap was acknowledged before the takeover, so the broker's resend starts
                // with the oldest it still holds: ids before it, from the gap on, are gone from the session
                int last = previousId(packetId);
                int lost = idCount(resendFrom, last);
                if (lost < 32_768) { // farther than that is not a resend of this gap: nothing to conclude
                    LOG.errorf("MQTT broker lost packet ids %d..%d for %s for good (%d message(s), not resent after "
                            + "the takeover: its session queue was full, e.g. Mosquitto's max_queued_messages with the "
                            + "Receive Maximum reached); they are not in Kafka", resendFrom, last, settings.clientId(),
                            lost);
                    listener.onBrokerLost(this, lost);
                }
            }
            expectedPacketId = nextId(packetId);
            return true;
        }
        if (packetId == expectedPacketId) {
            expectedPacketId = nextId(packetId);
            if (deferredCount > 0 && idCount(firstDeferred, packetId) >= MAX_DEFERRED_SPAN) {
                startDeferredResend("the noted ids span " + MAX_DEFERRED_SPAN + " packet ids");
            }
            return true;
        }
        int first = expectedPacketId;
        int last = previousId(packetId);
        int skipped = idCount(first, last);
        // reads paused, now or earlier on this connection: a skipped message may be one the broker still holds
        long holdOff = readsWerePaused ? 0 : listener.resendHoldOffMillis(this);
        if (holdOff > 0 && deferredCount + skipped <= MAX_DEFERRED
                && (deferredCount == 0 || idCount(firstDeferred, packetId) < MAX_DEFERRED_SPAN)) {
            deferGap(first, last, skipped, holdOff);
            expectedPacketId = nextId(packetId);
            return true;
        }
        dropping = true;
        firstSkipped = first;
        applyAutoRead(); // what follows is discarded anyway: let the broker keep it
        LOG.warnf("MQTT broker skipped packet ids %d..%d for %s (dropped on their way here, e.g. Mosquitto's"
                + " max_queued_messages); reconnecting once the earlier messages are acknowledged, so that it resends"
                + " them in order", first, last, settings.clientId());
        listener.onBrokerDropped(this, first, last);
        disconnectForResendWhenIdle();
        return false;
    }

    private static int nextId(int packetId) {
        return packetId == 65_535 ? 1 : packetId + 1;
    }

    private static int previousId(int packetId) {
        return packetId == 1 ? 65_535 : packetId - 1;
    }

    /** How many packet ids {@code first}..{@code last} spans, wrapping after 65535 (ids are 1-65535). */
    static int idCount(int first, int last) {
        return last >= first ? last - first + 1 : last + 65_535 - first + 1;
    }

    /**
     * A gap during the resend hold-off: the broker dropped these for good moments ago and is likely still doing so, so
     * instead of stalling for a takeover now, note the ids and take messages on; one takeover checks them all when
     * the hold-off ends.
     */
    private void deferGap(int first, int last, int skipped, long holdOffMillis) {
        if (deferred == null) {
            deferred = new java.util.BitSet(65_536);
        }
        if (deferredCount == 0) {
            firstDeferred = first;
            LOG.warnf("MQTT broker skipped packet ids %d..%d for %s while it is dropping messages for good (its last "
                    + "resend lacked the ids it had skipped); taking messages on and checking every id it skips with "
                    + "one takeover in %d ms", first, last, settings.clientId(), holdOffMillis);
            deferredTimer = vertx.setTimer(holdOffMillis, id -> context.runOnContext(v -> {
                deferredTimer = -1;
                startDeferredResend("the resend hold-off ended");
            }));
        } else {
            LOG.debugf("MQTT broker skipped packet ids %d..%d for %s (noted for the check)", first, last,
                    settings.clientId());
        }
        for (int id = first, n = 0; n < skipped; id = nextId(id), n++) {
            deferred.set(id);
        }
        deferredCount += skipped;
        listener.onBrokerDropped(this, first, last);
    }

    /** The noted ids' check: stop taking messages and take the session over once the earlier ones are acknowledged. */
    private void startDeferredResend(String why) {
        if (deferredCount == 0 || dropping || closed) {
            return;
        }
        if (deferredTimer >= 0) {
            vertx.cancelTimer(deferredTimer);
            deferredTimer = -1;
        }
        dropping = true;
        firstSkipped = expectedPacketId; // the resend goes on from here (the rest was acknowledged)
        applyAutoRead();
        LOG.infof("MQTT broker skipped %d packet id(s) for %s since %d (%s): checking them with a takeover",
                deferredCount, settings.clientId(), firstDeferred, why);
        disconnectForResendWhenIdle();
    }

    /** The resend went past the noted ids: those it did not include are gone from the session. */
    private void finishDeferredCheck() {
        int lost = deferredToCheckCount;
        if (resentLate > 0) {
            LOG.warnf("MQTT broker resent %d message(s) for %s that it had skipped while dropping; delivered now, after"
                    + " later messages of their devices", resentLate, settings.clientId());
            listener.onBrokerResentLate(this, resentLate);
        }
        if (lost > 0) {
            LOG.errorf("MQTT broker lost %d message(s) for %s for good (packet ids %s, skipped while it was dropping "
                    + "and not resent after the takeover: its session queue was full, e.g. Mosquitto's "
                    + "max_queued_messages with the Receive Maximum reached); they are not in Kafka", lost,
                    settings.clientId(), ranges(deferredToCheck));
            listener.onBrokerLost(this, lost);
        }
        deferredToCheck = null;
        deferredToCheckCount = 0;
        resentLate = 0;
    }

    /** {@code ids} as ranges, "a..b, c, d..e", the first 20 of them. */
    static String ranges(java.util.BitSet ids) {
        StringBuilder out = new StringBuilder();
        int shown = 0;
        for (int from = ids.nextSetBit(0); from >= 0; from = ids.nextSetBit(from)) {
            int to = ids.nextClearBit(from) - 1;
            if (shown++ == 20) {
                out.append(", …");
                break;
            }
            out.append(out.length() == 0 ? "" : ", ").append(from).append(to > from ? ".." + to : "");
            from = to + 1;
        }
        return out.toString();
    }

    /** The next connection checks the noted ids of {@code previous} in the broker's resend. */
    void checkDeferredOf(MqttLink previous) {
        if (previous.deferredCount > 0) {
            deferredToCheck = previous.deferred;
            deferredToCheckCount = previous.deferredCount;
            previous.deferred = null;
            previous.deferredCount = 0;
        }
    }

    /** Once nothing taken before the gap waits for its acknowledgement: DISCONNECT, keeping the session. */
    private void disconnectForResendWhenIdle() {
        if (dropping && !closedForResend && !closed && unacked.get() == 0) {
            closedForResend = true;
            channel.channel().config().setAutoRead(true); // to see the answer; anything still arriving is discarded
            if (listener.takesOverForResend(this)) {
                // the next connection takes the session over once the broker has applied every PUBACK sent here
                // (taking it over earlier, with acknowledgements unread on this socket, the broker would resend
                // acknowledged messages); the flush sends any PUBACK still buffered ahead of the PINGREQ
                ping();
                barrierPing = pingsSent;
                vertx.setTimer(5_000, id -> context.runOnContext(v -> close(handedOver
                        ? "the broker did not close after the session was taken over"
                        : "no PINGRESP to the resend barrier")));
            } else {
                // then wait for the broker to close the socket: it has read the DISCONNECT, so every PUBACK before it
                // is applied
                channel.writeAndFlush(disconnectMessage(false));
                vertx.setTimer(5_000, id -> context.runOnContext(v -> close("the broker did not close after DISCONNECT")));
            }
        }
    }

    private void ping() {
        pingsSent++;
        write(PINGREQ, true);
    }

    /** Whether this link closed itself so that the broker resends what it dropped (reconnect at once). */
    boolean closedForResend() {
        return closedForResend;
    }

    /** The next connection of this session starts its sequence with the broker's resend. */
    void expectResend() {
        sequenceFromRedelivery = true;
    }

    /** As {@link #expectResend()}, which should start with {@code packetId}, the first the previous link missed. */
    void expectResendFrom(int packetId) {
        sequenceFromRedelivery = true;
        resendFrom = packetId;
    }

    /** The first packet id of the gap this link found, or -1. */
    int firstSkipped() {
        return firstSkipped;
    }

    /** Acknowledges a received message (PUBACK, or PUBREC for QoS 2). Any thread; written in batches. */
    void ack(int packetId, int qos) {
        if (qos == 0) {
            return;
        }
        acks.offer(packetId << 2 | qos);
        if (ackScheduled.compareAndSet(false, true)) {
            context.runOnContext(v -> writeAcks());
        }
    }

    private void writeAcks() {
        ackScheduled.set(false);
        Integer ack;
        ByteBuf out = null;
        while ((ack = acks.poll()) != null) {
            unacked.decrementAndGet();
            if (closed || channel == null) {
                continue; // the broker redelivers it on the next connection
            }
            int packetId = ack >>> 2;
            if ((ack & 3) == 2) {
                inboundQos2.add(packetId);
            }
            if (out == null) {
                out = channel.alloc().ioBuffer(ACK_BUFFER_BYTES);
            }
            // one buffer for the batch, 4 bytes each, the same bytes the encoder writes for a PUBACK or PUBREC with
            // the success code (MQTT 5 too: reason code and properties may be left out then), without a message
            // object and an encoder pass per acknowledgement
            out.writeByte((ack & 3) == 2 ? PUBREC_BYTE : PUBACK_BYTE).writeByte(2).writeShort(packetId);
        }
        if (out != null) {
            lastWriteNanos = System.nanoTime();
            channel.writeAndFlush(out);
        }
        disconnectForResendWhenIdle();
    }

    /** SUBSCRIBE; completes with one reason code per filter (0-2 granted QoS, 0x80 and up refused). */
    Future<List<Integer>> subscribe(Map<String, Integer> filters) {
        Promise<List<Integer>> promise = Promise.promise();
        if (!connected()) {
            return Future.failedFuture("not connected");
        }
        int id = allocatePacketId();
        MqttMessageBuilders.SubscribeBuilder subscribe = MqttMessageBuilders.subscribe().messageId(id);
        filters.forEach((filter, qos) -> subscribe.addSubscription(filter, new MqttSubscriptionOption(
                MqttQoS.valueOf(qos), false, false, MqttSubscriptionOption.RetainedHandlingPolicy.SEND_AT_SUBSCRIBE)));
        pendingSubscribes.put(id, promise);
        write(subscribe.build(), true);
        return promise.future();
    }

    /** UNSUBSCRIBE; completes on the UNSUBACK. */
    Future<Void> unsubscribe(List<String> filters) {
        Promise<Void> promise = Promise.promise();
        if (!connected() || filters.isEmpty()) {
            return connected() ? Future.succeededFuture() : Future.failedFuture("not connected");
        }
        int id = allocatePacketId();
        MqttMessageBuilders.UnsubscribeBuilder unsubscribe = MqttMessageBuilders.unsubscribe().messageId(id);
        filters.forEach(unsubscribe::addTopicFilter);
        pendingUnsubscribes.put(id, promise);
        write(unsubscribe.build(), true);
        return promise.future();
    }

    /**
     * PUBLISH. Completes once the broker acknowledged it (QoS 1 PUBACK, QoS 2 PUBCOMP; QoS 0 once written). QoS 1/2
     * publishes beyond the broker's Receive Maximum wait here, in order. Call on the context.
     */
    Future<Void> publish(String topic, byte[] payload, int qos, boolean retain, MqttProperties properties) {
        Promise<Void> promise = Promise.promise();
        if (!connected()) {
            promise.fail(new IllegalStateException("MQTT broker not connected"));
            return promise.future();
        }
        Outbound out = new Outbound(topic, payload, qos, retain, settings.mqtt5() ? properties : null, promise);
        if (qos == 0) {
            write(publishMessage(out), true);
            promise.complete();
        } else if (outboundInFlight.size() < outboundWindow) {
            send(out);
        } else {
            outboundWaiting.add(out);
        }
        return promise.future();
    }

    private void send(Outbound out) {
        out.packetId = allocatePacketId();
        outboundInFlight.put(out.packetId, out);
        write(publishMessage(out), true);
    }

    private MqttPublishMessage publishMessage(Outbound out) {
        MqttMessageBuilders.PublishBuilder builder = MqttMessageBuilders.publish().topicName(out.topic)
                .qos(MqttQoS.valueOf(out.qos)).retained(out.retain).messageId(out.qos == 0 ? 0 : out.packetId)
                .payload(Unpooled.wrappedBuffer(out.payload));
        if (out.properties != null) {
            builder.properties(out.properties);
        }
        return builder.build();
    }

    /** Drops a waiting or in-flight publish the caller gave up on (its timeout), freeing its window slot. */
    void abandon(Future<Void> publish) {
        outboundWaiting.removeIf(o -> o.done.future() == publish);
    }

    private void onPubRec(int packetId, int reason) {
        Outbound out = outboundInFlight.get(packetId);
        if (out == null) {
            write(new MqttMessage(PUBREL, MqttMessageIdVariableHeader.from(packetId)), true);
            return;
        }
        if (reason >= 0x80) {
            completeOutbound(packetId, reason);
            return;
        }
        out.released = true;
        write(new MqttMessage(PUBREL, MqttMessageIdVariableHeader.from(packetId)), true);
    }

    private void completeOutbound(int packetId, int reason) {
        Outbound out = outboundInFlight.remove(packetId);
        if (out != null) {
            if (reason >= 0x80) {
                out.done.tryFail(new IllegalStateException("the broker refused the publish to " + out.topic
                        + " (reason 0x" + Integer.toHexString(reason) + ")"));
            } else {
                out.done.tryComplete();
            }
        }
        while (!outboundWaiting.isEmpty() && outboundInFlight.size() < outboundWindow && connected()) {
            send(outboundWaiting.poll());
        }
    }

    private static int packetId(MqttMessage message) {
        return ((MqttMessageIdVariableHeader) message.variableHeader()).messageId();
    }

    private static int reasonCode(MqttMessage message) {
        return message.variableHeader() instanceof MqttPubReplyMessageVariableHeader h ? h.reasonCode() & 0xFF : 0;
    }

    private int allocatePacketId() {
        for (int i = 0; i < 65_535; i++) {
            int id = nextPacketId;
            nextPacketId = nextId(nextPacketId);
            if (!outboundInFlight.containsKey(id) && !pendingSubscribes.containsKey(id)
                    && !pendingUnsubscribes.containsKey(id)) {
                return id;
            }
        }
        throw new IllegalStateException("no free MQTT packet id");
    }

    /**
     * Stops (or resumes) reading from the socket: the broker then holds further messages. Only needed where the
     * Receive Maximum does not bound the flow: QoS 0 floods, and MQTT 3.1.1. On the context.
     */
    void readsPaused(boolean paused) {
        if (readsPaused == paused) {
            return;
        }
        readsPaused = paused;
        if (paused) {
            // from now on a skipped message may be one the broker still holds (its socket queue overflowed while we
            // did not read): check what was noted, and take over at once for every later gap
            readsWerePaused = true;
            startDeferredResend("reads paused");
        }
        applyAutoRead();
        if (!paused) {
            lastReadNanos = System.nanoTime(); // no PINGRESP could be read while paused
        }
    }

    private void applyAutoRead() {
        if (channel != null) {
            channel.channel().config().setAutoRead(closedForResend || !readsPaused && !dropping);
        }
    }

    private void startProbes() {
        if (settings.probeTopic() == null || !settings.resendDropped() || !settings.mqtt5()) {
            return;
        }
        probeTimer = vertx.setPeriodic(PROBE_QUIET_NANOS / 1_000_000, id -> context.runOnContext(v -> {
            if (closed) {
                vertx.cancelTimer(id);
                return;
            }
            if (receivedSinceProbe && !dropping && !readsPaused
                    && System.nanoTime() - lastReadNanos >= PROBE_QUIET_NANOS) { // set for every packet read
                receivedSinceProbe = false;
                publish(settings.probeTopic(), new byte[0], 1, false, null)
                        .onFailure(e -> LOG.debugf("Sequence probe on %s failed: %s", settings.clientId(), e.toString()));
            }
        }));
    }

    private void startKeepAlive(int keepAliveSeconds) {
        if (keepAliveSeconds <= 0) {
            return;
        }
        long keepAliveNanos = keepAliveSeconds * 1_000_000_000L;
        long period = Math.max(500, keepAliveSeconds * 1000L / 4);
        keepAliveTimer = vertx.setPeriodic(period, id -> context.runOnContext(v -> {
            if (closed) {
                vertx.cancelTimer(id);
                return;
            }
            long now = System.nanoTime();
            if (!readsPaused && !dropping && now - lastReadNanos > keepAliveNanos * 3 / 2) {
                fail("no packet from the broker for " + (now - lastReadNanos) / 1_000_000 + " ms (keep-alive "
                        + keepAliveSeconds + " s)");
                return;
            }
            if (now - lastWriteNanos >= keepAliveNanos / 2 || now - lastReadNanos >= keepAliveNanos / 2) {
                ping();
            }
        }));
    }

    /**
     * Sends DISCONNECT and closes. With {@code discardSession} an MQTT 5 link sets the Session Expiry Interval to 0,
     * so the broker drops the session (nothing of it is needed any more). On the context.
     */
    Future<Void> disconnect(boolean discardSession) {
        Promise<Void> done = Promise.promise();
        if (closed || channel == null) {
            close("disconnect");
            done.complete();
            return done.future();
        }
        channel.writeAndFlush(disconnectMessage(discardSession)).addListener(f -> context.runOnContext(v -> {
            close("disconnect");
            done.tryComplete();
        }));
        return done.future();
    }

    private MqttMessage disconnectMessage(boolean discardSession) {
        MqttMessageBuilders.DisconnectBuilder disconnect = MqttMessageBuilders.disconnect();
        if (settings.mqtt5()) {
            disconnect.reasonCode((byte) 0);
            if (discardSession) {
                MqttProperties properties = new MqttProperties();
                properties.add(new MqttProperties.IntegerProperty(
                        MqttProperties.MqttPropertyType.SESSION_EXPIRY_INTERVAL.value(), 0));
                disconnect.properties(properties);
            }
        }
        return disconnect.build();
    }

    private void write(Object message, boolean flush) {
        if (closed || channel == null) {
            io.netty.util.ReferenceCountUtil.release(message);
            return;
        }
        lastWriteNanos = System.nanoTime();
        if (flush) {
            channel.writeAndFlush(message);
        } else {
            channel.write(message);
        }
    }

    private void fail(String why) {
        LOG.warnf("MQTT connection %s closing: %s", settings.clientId(), why);
        Promise<ConnAck> p = connecting;
        close(why);
        if (p != null) {
            p.tryFail(new IllegalStateException(why));
        }
    }

    /** Closes the socket without DISCONNECT (the broker publishes nothing for us: we have no will). */
    void close(String why) {
        if (!closed) {
            closed = true;
            lastCloseReason = why;
            if (socket != null) {
                socket.close();
            }
            cleanUp();
        }
    }

    private String lastCloseReason = "connection closed";
    private Throwable socketError;

    private void onSocketClosed() {
        if (!closed) {
            closed = true;
            lastCloseReason = "the broker closed the connection";
            if (socketError != null) {
                Throwable root = socketError;
                while (root.getCause() != null && root.getCause() != root) {
                    root = root.getCause();
                }
                lastCloseReason += " (" + (root instanceof javax.net.ssl.SSLException ? "TLS: " : "")
                        + root.getMessage() + ")";
            }
        }
        cleanUp();
    }

    private boolean cleanedUp;

    private void cleanUp() {
        if (cleanedUp) {
            return;
        }
        cleanedUp = true;
        connected = false;
        if (keepAliveTimer >= 0) {
            vertx.cancelTimer(keepAliveTimer);
        }
        if (probeTimer >= 0) {
            vertx.cancelTimer(probeTimer);
        }
        if (deferredTimer >= 0) {
            vertx.cancelTimer(deferredTimer);
        }
        if (deferredCount > 0) {
            // closed otherwise than for the check: what the broker still held comes with the redelivery, unchecked
            LOG.warnf("MQTT connection %s closed before its check of %d skipped packet id(s) (%s): those the broker "
                    + "still holds are redelivered, the others are lost; not verified", settings.clientId(),
                    deferredCount, ranges(deferred));
        }
        IllegalStateException lost = new IllegalStateException("MQTT connection lost (" + lastCloseReason
                + ") before the broker acknowledged");
        List<Outbound> unfinished = new ArrayList<>(outboundInFlight.values());
        unfinished.addAll(outboundWaiting);
        outboundInFlight.clear();
        outboundWaiting.clear();
        unfinished.forEach(o -> o.done.tryFail(lost));
        pendingSubscribes.values().forEach(p -> p.tryFail(lost));
        pendingSubscribes.clear();
        pendingUnsubscribes.values().forEach(p -> p.tryFail(lost));
        pendingUnsubscribes.clear();
        Promise<ConnAck> p = connecting;
        connecting = null;
        if (p != null) {
            p.tryFail(new IllegalStateException(lastCloseReason, socketError));
        }
        listener.onClosed(this, lastCloseReason);
    }

    private static void release(MqttMessage message) {
        io.netty.util.ReferenceCountUtil.release(message);
    }
}
