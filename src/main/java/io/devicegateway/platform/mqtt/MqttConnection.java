package io.devicegateway.platform.mqtt;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.annotation.Priority;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Instance;
import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.quarkus.runtime.annotations.RegisterForReflection;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.impl.NetSocketInternal;
import io.vertx.mqtt.MqttClient;
import io.vertx.mqtt.MqttClientOptions;
import io.vertx.mqtt.impl.MqttClientImpl;
import io.netty.handler.codec.mqtt.MqttQoS;

/**
 * The gateway's one MQTT connection: persistent session (clean session off), manual acknowledgement,
 * reconnect with exponential backoff and jitter, resubscribe on every connect. Capabilities plug in as
 * {@link MqttSubscription} beans.
 *
 * <p>A new Vert.x client is created per connection attempt so an acknowledgement for a message received on an
 * old connection can never be written to a new one.
 */
@ApplicationScoped
// MqttClientImpl#connection is read through a VarHandle to pause the socket (see pauseInbound)
@RegisterForReflection(targets = MqttClientImpl.class, fields = true, methods = false)
public class MqttConnection {

    private static final Logger LOG = Logger.getLogger(MqttConnection.class);
    /** The largest packet MQTT allows: the broker's own limit decides; a smaller one here would wedge the stream. */
    static final int MAX_PACKET_SIZE = 268_435_455;
    private static final VarHandle CONNECTION = connectionHandle();

    private final Vertx vertx;
    private final MqttConfig config;
    private final String clientId;
    private final Instance<MqttSubscription> subscriptionBeans;
    private final List<MqttSubscription> subscriptions = new ArrayList<>();
    private final Map<String, MqttSubscription> filterOwners = new LinkedHashMap<>();
    private final Counter reconnects;
    private final AtomicInteger state = new AtomicInteger(); // 0 down, 1 connected, 2 connected and subscribed
    private final AtomicBoolean stopping = new AtomicBoolean();

    private volatile MqttClient client;
    /** Outbound QoS 1/2 publishes of the current connection waiting for the broker, by packet id. */
    private final Map<Integer, Promise<Void>> outbound = new java.util.HashMap<>();
    private Context context;
    private long backoffMillis;
    private volatile boolean inboundPaused;

    MqttConnection(Vertx vertx, MqttConfig config, Instance<MqttSubscription> subscriptions, MeterRegistry registry,
            @ConfigProperty(name = "quarkus.http.port", defaultValue = "8080") int httpPort) {
        this.vertx = vertx;
        this.config = config;
        this.clientId = config.clientId().filter(id -> !id.isBlank()).orElseGet(() -> defaultClientId(httpPort));
        this.subscriptionBeans = subscriptions;
        this.backoffMillis = config.reconnectInitialDelay().toMillis();
        Gauge.builder("gateway.mqtt.connected", state, s -> s.get() == 2 ? 1 : 0)
                .description("1 while the MQTT connection is up and subscribed, 0 otherwise").register(registry);
        Gauge.builder("gateway.mqtt.inbound.paused", this, c -> c.inboundPaused ? 1 : 0)
                .description("1 while reading from the broker is paused because in-flight work is at its bound")
                .register(registry);
        this.reconnects = Counter.builder("gateway.mqtt.reconnects")
                .description("MQTT (re)connection attempts after the first").register(registry);
    }

    /** Stable per replica: the pod name, plus the HTTP port so two local instances do not collide. */
    static String defaultClientId(int httpPort) {
        String host = System.getenv("HOSTNAME");
        if (host == null || host.isBlank()) {
            try {
                host = InetAddress.getLocalHost().getHostName();
            } catch (Exception e) {
                host = "local";
            }
        }
        String id = "dgw-" + host.replaceAll("[^A-Za-z0-9._-]", "-") + "-" + httpPort;
        return id.length() > 64 ? id.substring(0, 64) : id;
    }

    void start(@Observes @Priority(Integer.MAX_VALUE) StartupEvent event) {
        // collected here, not in the constructor: subscribers inject this connection themselves
        subscriptionBeans.forEach(subscriptions::add);
        for (MqttSubscription s : subscriptions) {
            for (String filter : s.filters()) {
                filterOwners.put(filter, s);
            }
        }
        context = vertx.getOrCreateContext();
        LOG.infof("MQTT client id %s, broker %s:%d, subscriptions %s%s", clientId, config.host(), config.port(),
                filterOwners.keySet(), config.sharedGroup().map(g -> " (shared group " + g + ")").orElse(""));
        context.runOnContext(v -> connect());
    }

    /**
     * Graceful drain (SIGTERM, Knative scale-down). With a shared group, the replica first unsubscribes its shared
     * filters so the broker stops assigning messages to a session that is going away (Mosquitto would otherwise
     * keep them queued for this client id until it returns), and keeps reading what was already assigned to it.
     * Then it waits until what is in flight reached Kafka and its PUBACK went out, and disconnects. Without a shared
     * group the subscription stays, so the broker keeps queueing for this client id while it restarts. Whatever is
     * still unacknowledged at the drain timeout stays with the broker and is redelivered.
     */
    void stop(@Observes ShutdownEvent event) {
        MqttClient current = client;
        if (current != null && current.isConnected()) {
            long deadline = System.nanoTime() + config.drainTimeout().toNanos();
            if (config.sharedGroup().isPresent()) {
                unsubscribeShared(current, deadline);
            } else {
                pauseInbound();
            }
            while (inFlight() > 0 && System.nanoTime() < deadline) {
                java.util.concurrent.locks.LockSupport.parkNanos(10_000_000L);
            }
            int left = inFlight();
            // PUBACKs are written on the event loop: one more task there runs after the queued ones
            java.util.concurrent.CompletableFuture<Void> flushed = new java.util.concurrent.CompletableFuture<>();
            context.runOnContext(v -> flushed.complete(null));
            flushed.orTimeout(2, java.util.concurrent.TimeUnit.SECONDS).exceptionally(e -> null).join();
            LOG.infof("MQTT drain done (%d message(s) left unacknowledged for redelivery); disconnecting", left);
        }
        stopping.set(true);
        if (current != null && current.isConnected()) {
            current.disconnect().toCompletionStage().toCompletableFuture().orTimeout(2, java.util.concurrent.TimeUnit.SECONDS)
                    .exceptionally(e -> null).join();
        }
    }

    /** UNSUBSCRIBE the shared filters and wait for the UNSUBACK; what the broker already assigned still arrives. */
    private void unsubscribeShared(MqttClient current, long deadline) {
        List<String> shared = new ArrayList<>();
        for (MqttSubscription s : subscriptions) {
            if (s.shared()) {
                s.filters().forEach(f -> shared.add("$share/" + config.sharedGroup().get() + "/" + f));
            }
        }
        if (shared.isEmpty()) {
            return;
        }
        java.util.concurrent.CompletableFuture<Void> unsubscribed = new java.util.concurrent.CompletableFuture<>();
        context.runOnContext(v -> {
            current.unsubscribeCompletionHandler(id -> unsubscribed.complete(null));
            current.unsubscribe(shared).onFailure(unsubscribed::completeExceptionally);
        });
        long wait = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
        unsubscribed.orTimeout(Math.min(wait, 5_000), java.util.concurrent.TimeUnit.MILLISECONDS)
                .exceptionally(e -> null).join();
        // messages the broker assigned before the UNSUBACK are on their way: give them a moment to arrive
        long quietUntil = System.nanoTime() + 300_000_000L;
        while (System.nanoTime() < Math.min(quietUntil, deadline)) {
            java.util.concurrent.locks.LockSupport.parkNanos(10_000_000L);
        }
    }

    private int inFlight() {
        int sum = 0;
        for (MqttSubscription s : subscriptions) {
            sum += s.inFlight();
        }
        return sum;
    }

    public String clientId() {
        return clientId;
    }

    /** Connected and every subscription granted. */
    public boolean ready() {
        return state.get() == 2;
    }

    private void connect() {
        if (stopping.get()) {
            return;
        }
        MqttClientOptions options = new MqttClientOptions()
                .setClientId(clientId)
                .setCleanSession(false)
                .setKeepAliveInterval(config.keepAliveSeconds())
                .setMaxMessageSize(MAX_PACKET_SIZE)
                .setMaxInflightQueue(config.maxOutboundInFlight())
                .setAckTimeout(-1);
        options.setAutoAck(false); // PUBACK only when the handler says the message is safe (not fluent in 4.5)
        options.setSsl(config.ssl());
        options.setReconnectAttempts(0);
        config.username().ifPresent(options::setUsername);
        config.password().ifPresent(options::setPassword);
        MqttClient attempt = MqttClient.create(vertx, options);
        // Handler before connect: a persistent session's backlog arrives right after CONNACK.
        PubAckQueue[] acks = new PubAckQueue[1]; // the socket exists only once connected
        attempt.publishHandler(publish -> {
            if (acks[0] == null) {
                acks[0] = new PubAckQueue(context, socket(attempt));
            }
            dispatch(new InboundMessage(publish, acks[0]));
        });
        attempt.closeHandler(v -> onClosed(attempt));
        attempt.publishCompletionHandler(packetId -> {
            Promise<Void> done = outbound.remove(packetId);
            if (done != null) {
                done.complete();
            }
        });
        attempt.exceptionHandler(e -> LOG.debugf("MQTT connection error: %s", e.toString()));
        client = attempt;
        attempt.connect(config.port(), config.host()).onSuccess(connAck -> {
            LOG.infof("MQTT connected to %s:%d (session present: %s)", config.host(), config.port(),
                    connAck.isSessionPresent());
            state.set(1);
            backoffMillis = config.reconnectInitialDelay().toMillis();
            if (inboundPaused) {
                setAutoRead(attempt, false);
            }
            subscribe(attempt);
        }).onFailure(e -> {
            LOG.warnf("MQTT connect to %s:%d failed: %s", config.host(), config.port(), e.getMessage());
            scheduleReconnect();
        });
    }

    private void subscribe(MqttClient connected) {
        Map<String, Integer> filters = new LinkedHashMap<>();
        for (MqttSubscription s : subscriptions) {
            for (String f : s.filters()) {
                filters.put(s.shared() && config.sharedGroup().isPresent()
                        ? "$share/" + config.sharedGroup().get() + "/" + f : f, 1);
            }
        }
        if (filters.isEmpty()) {
            state.set(2);
            return;
        }
        connected.subscribeCompletionHandler(subAck -> {
            if (subAck.grantedQoSLevels().stream().anyMatch(q -> q == 0x80)) {
                LOG.errorf("MQTT broker refused a subscription %s: granted %s", filters.keySet(),
                        subAck.grantedQoSLevels());
                return;
            }
            state.compareAndSet(1, 2);
        });
        connected.subscribe(filters).onFailure(e -> LOG.warnf("MQTT subscribe failed: %s", e.getMessage()));
    }

    private void onClosed(MqttClient closed) {
        if (closed != client) {
            return;
        }
        state.set(0);
        // the broker may or may not have them: report failure, the caller decides (commands answer UNAVAILABLE)
        List<Promise<Void>> unacknowledged = new ArrayList<>(outbound.values());
        outbound.clear();
        unacknowledged.forEach(p -> p.tryFail(new IllegalStateException("MQTT connection lost before the broker acknowledged")));
        if (!stopping.get()) {
            LOG.warn("MQTT connection lost; reconnecting");
            scheduleReconnect();
        }
    }

    private void scheduleReconnect() {
        if (stopping.get()) {
            return;
        }
        long delay = backoffMillis / 2 + ThreadLocalRandom.current().nextLong(backoffMillis / 2 + 1);
        backoffMillis = Math.min(backoffMillis * 2, config.reconnectMaxDelay().toMillis());
        reconnects.increment();
        vertx.setTimer(Math.max(1, delay), id -> context.runOnContext(v -> connect()));
    }

    private void dispatch(InboundMessage message) {
        for (Map.Entry<String, MqttSubscription> e : filterOwners.entrySet()) {
            if (TopicFilters.matches(e.getKey(), message.topic())) {
                e.getValue().onMessage(message);
                return;
            }
        }
        // Only possible with overlapping broker-side session state from an older configuration.
        LOG.warnf("MQTT message on %s matches no subscription; acknowledging it", message.topic());
        message.ack();
    }

    /**
     * Stops reading from the broker socket: the broker then holds further messages (QoS 1 in its session,
     * QoS 0 per its queue limits). Used to bound in-flight work when Kafka is slow. Call on any thread; on the
     * event loop it takes effect at once, so at most the rest of the current socket read still arrives.
     */
    public void pauseInbound() {
        onContext(() -> {
            if (!inboundPaused) {
                inboundPaused = true;
                setAutoRead(client, false);
            }
        });
    }

    public void resumeInbound() {
        onContext(() -> {
            if (inboundPaused) {
                inboundPaused = false;
                setAutoRead(client, true);
            }
        });
    }

    /**
     * Netty's autoRead, not NetSocket#pause: Vert.x hands decoded MQTT packets straight to the client, so only
     * the channel stops the reads. What the current read already holds (at most one read buffer) still arrives.
     */
    private static void setAutoRead(MqttClient client, boolean autoRead) {
        NetSocketInternal socket = socket(client);
        if (socket != null) {
            socket.channelHandlerContext().channel().config().setAutoRead(autoRead);
        }
    }

    /** Inline when already on the connection's event loop: a pause must take effect before the next message. */
    private void onContext(Runnable action) {
        if (Vertx.currentContext() == context) {
            action.run();
        } else {
            context.runOnContext(v -> action.run());
        }
    }

    /**
     * Publishes on the current connection. Completes when the broker has acknowledged it (PUBACK for QoS 1,
     * PUBCOMP for QoS 2; at once for QoS 0 once written); fails fast when disconnected, and fails if the
     * connection drops before the acknowledgement. Any thread.
     */
    public Future<Void> publish(String topic, Buffer payload, int qos, boolean retain) {
        Promise<Void> acknowledged = Promise.promise();
        onContext(() -> {
            MqttClient current = client;
            if (current == null || !ready()) {
                acknowledged.fail(new IllegalStateException("MQTT broker not connected"));
                return;
            }
            try {
                current.publish(topic, payload, MqttQoS.valueOf(qos), false, retain).onComplete(written -> {
                    if (written.failed()) {
                        acknowledged.tryFail(written.cause());
                    } else if (qos == 0) {
                        acknowledged.tryComplete();
                    } else {
                        int packetId = written.result();
                        outbound.put(packetId, acknowledged);
                        // a broker that never acknowledges must not leave the caller waiting forever
                        vertx.setTimer(config.publishTimeout().toMillis(), id -> {
                            if (outbound.remove(packetId, acknowledged)) {
                                acknowledged.tryFail(new java.util.concurrent.TimeoutException(
                                        "no acknowledgement from the broker within " + config.publishTimeout()));
                            }
                        });
                    }
                });
            } catch (RuntimeException e) {
                acknowledged.tryFail(e); // e.g. the connection closed under us
            }
        });
        return acknowledged.future();
    }

    private static NetSocketInternal socket(MqttClient client) {
        if (client == null || CONNECTION == null) {
            return null;
        }
        return (NetSocketInternal) CONNECTION.getVolatile((MqttClientImpl) client);
    }

    private static VarHandle connectionHandle() {
        try {
            return MethodHandles.privateLookupIn(MqttClientImpl.class, MethodHandles.lookup())
                    .findVarHandle(MqttClientImpl.class, "connection", NetSocketInternal.class);
        } catch (ReflectiveOperationException | RuntimeException e) {
            Logger.getLogger(MqttConnection.class).warn("Cannot reach the MQTT socket; inbound pause disabled", e);
            return null;
        }
    }
}
