package io.devicegateway.platform.mqtt;

import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

import jakarta.annotation.Priority;
import jakarta.inject.Singleton;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Any;
import jakarta.enterprise.inject.Instance;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.quarkus.runtime.ShutdownDelayInitiatedEvent;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.quarkus.tls.TlsConfiguration;
import io.quarkus.tls.TlsConfigurationRegistry;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vertx.redis.client.Redis;

/**
 * The gateway's MQTT connection: MQTT 5 (or 3.1.1), persistent session, manual acknowledgement, Receive Maximum
 * as inbound flow control, reconnect with exponential backoff and jitter, resubscribe on every connect, TLS through
 * the Quarkus TLS registry. Capabilities plug in as {@link MqttSubscription} beans.
 *
 * <p>Identity: unless a fixed {@code gateway.mqtt.client-id} is set, the client id is leased from Redis
 * ({@link ClientIdLeases}), so the broker session survives the pod: a replacement pod under a new name takes the
 * id over, and a replica adopts and drains any session whose holder is gone ({@link SessionAdopter}).
 *
 * <p>A new {@link MqttLink} is created per connection attempt so an acknowledgement for a message received on an
 * old connection can never be written to a new one.
 */
@Singleton // no client proxy: ingest calls it for every message
public class MqttConnection {

    /** Receive Maximum that leaves 1,000 ids (Mosquitto's default session queue) and a margin free: see MqttConfig. */
    static final int RECEIVE_MAXIMUM_ID_SAFE = 64_000;

    private static final Logger LOG = Logger.getLogger(MqttConnection.class);
    /** After the last message, how long a draining session must stay quiet before it counts as empty. */
    static final long QUIET_MILLIS = 500;

    private final Vertx vertx;
    private final MqttConfig config;
    private final String instanceId;
    private final String fixedClientId;
    private final Instance<MqttSubscription> subscriptionBeans;
    private final Instance<TlsConfigurationRegistry> tlsRegistry;
    private final Instance<Redis> redis;
    private final String redisKeyPrefix;
    private final List<MqttSubscription> subscriptions = new ArrayList<>();
    private final Map<String, MqttSubscription> filterOwners = new LinkedHashMap<>();
    private final Counter reconnects;
    private final Counter adoptedSessions;
    private final Counter brokerDrops;
    private final Counter brokerLost;
    private final Counter brokerResentLate;
    private final Counter resendReconnects;
    /** The link that closed itself for a resend without a prepared successor: the next attempt checks the resend. */
    private MqttLink resendNext;
    /** Until then a gap is checked with one takeover later, not at once (gateway.mqtt.resend-hold-off). */
    private long resendHoldOffUntil = System.nanoTime();
    /** The next connection for a resend, socket opened while the broker closes the last one; its CONNECT waits. */
    private MqttLink resendLink;
    private Promise<Void> resendLogin;
    private final AtomicInteger state = new AtomicInteger(); // 0 down, 1 connected, 2 connected and subscribed
    private final AtomicBoolean stopping = new AtomicBoolean();

    private volatile MqttLink link;
    private volatile String clientId;
    private volatile String problem = "connecting";
    private volatile long lastInboundNanos = System.nanoTime();
    private ClientIdLeases leases;
    private String goneTopicPrefix = "\u0000";
    private volatile int leasedId = -1;
    private SessionAdopter adopter;
    private NetClient netClient;
    private Context context;
    private long backoffMillis;
    private volatile boolean inboundPaused;
    private final java.util.concurrent.atomic.AtomicBoolean stopOnce = new java.util.concurrent.atomic.AtomicBoolean();
    /** Who holds reads paused; changed on the event loop only. */
    private final java.util.Set<String> pausedBy = java.util.concurrent.ConcurrentHashMap.newKeySet();

    MqttConnection(Vertx vertx, MqttConfig config, @Any Instance<MqttSubscription> subscriptions,
            Instance<TlsConfigurationRegistry> tlsRegistry, Instance<Redis> redis, MeterRegistry registry,
            @ConfigProperty(name = "quarkus.http.port", defaultValue = "8080") int httpPort,
            @ConfigProperty(name = "gateway.sessions.key-prefix", defaultValue = "dgw:") String redisKeyPrefix) {
        this.vertx = vertx;
        this.config = config;
        this.instanceId = defaultInstanceId(httpPort);
        this.fixedClientId = config.clientId().filter(id -> !id.isBlank()).orElse(null);
        this.clientId = fixedClientId;
        this.subscriptionBeans = subscriptions;
        this.tlsRegistry = tlsRegistry;
        this.redis = redis;
        this.redisKeyPrefix = redisKeyPrefix;
        this.backoffMillis = config.reconnectInitialDelay().toMillis();
        if (config.receiveMaximum() < 1 || config.receiveMaximum() > 65_535) {
            throw new IllegalArgumentException("gateway.mqtt.receive-maximum must be 1-65535, not "
                    + config.receiveMaximum());
        }
        if (config.receiveMaximum() > RECEIVE_MAXIMUM_ID_SAFE) {
            LOG.warnf("gateway.mqtt.receive-maximum %d leaves less than %d packet ids for the broker's session queue: "
                    + "Mosquitto reuses the id of a message still in flight once a session has 65,535 unacknowledged, "
                    + "and a PUBACK can then remove the wrong message (keep it at most 65535 minus the broker's "
                    + "max_queued_messages)", config.receiveMaximum(), 65_535 - RECEIVE_MAXIMUM_ID_SAFE);
        }
        if (config.maxPacketSize() < 1024 || config.maxPacketSize() > MqttLink.MAX_PACKET_SIZE) {
            throw new IllegalArgumentException("gateway.mqtt.max-packet-size must be 1024-" + MqttLink.MAX_PACKET_SIZE
                    + ", not " + config.maxPacketSize());
        }
        if (!config.protocolVersion().equals("5") && !config.protocolVersion().equals("3.1.1")) {
            throw new IllegalArgumentException("gateway.mqtt.protocol-version must be 5 or 3.1.1, not "
                    + config.protocolVersion());
        }
        Gauge.builder("gateway.mqtt.connected", state, s -> s.get() == 2 ? 1 : 0)
                .description("1 while the MQTT connection is up and subscribed, 0 otherwise").register(registry);
        Gauge.builder("gateway.mqtt.inbound.paused", this, c -> c.inboundPaused ? 1 : 0)
                .description("1 while reading from the broker is paused because in-flight work is at its bound")
                .register(registry);
        Gauge.builder("gateway.mqtt.unacknowledged", this, c -> {
            MqttLink current = c.link;
            return current == null ? 0 : current.unacked();
        }).description("QoS 1/2 messages received on the current connection and not yet acknowledged to the broker "
                + "(the broker counts them against the Receive Maximum)").register(registry);
        this.reconnects = Counter.builder("gateway.mqtt.reconnects")
                .description("MQTT (re)connection attempts after the first").register(registry);
        this.brokerDrops = Counter.builder("gateway.mqtt.broker.dropped")
                .description("Messages the broker dropped on their way to the gateway (packet ids it skipped); those "
                        + "it still holds are resent after a reconnect for resend").register(registry);
        this.brokerLost = Counter.builder("gateway.mqtt.broker.lost")
                .description("Messages the broker dropped for good (skipped ids it did not resend after the takeover: "
                        + "its session queue was full); not in Kafka").register(registry);
        this.brokerResentLate = Counter.builder("gateway.mqtt.broker.resent.late")
                .description("Skipped messages the broker still held, resent by a takeover after the resend hold-off "
                        + "and delivered then, after later messages of their devices").register(registry);
        this.resendReconnects = Counter.builder("gateway.mqtt.resend.reconnects")
                .description("Reconnects made so that the broker resends, in order, messages it dropped")
                .register(registry);
        this.adoptedSessions = Counter.builder("gateway.mqtt.sessions.adopted")
                .description("Broker sessions of gone gateway instances that this instance took over and drained")
                .register(registry);
    }

    /**
     * This instance's name (pod name and HTTP port), for envelopes and logs. Unique among live instances; long pod
     * names keep a hash of the full name so two never collide after shortening.
     */
    static String defaultInstanceId(int httpPort) {
        String host = System.getenv("HOSTNAME");
        if (host == null || host.isBlank()) {
            try {
                host = InetAddress.getLocalHost().getHostName();
            } catch (Exception e) {
                host = "local";
            }
        }
        return instanceId(host, httpPort);
    }

    /** {@code <host>-<port>}, at most 60 characters: a longer one keeps 47 and a hash of the whole. */
    static String instanceId(String host, int httpPort) {
        String id = host.replaceAll("[^A-Za-z0-9._-]", "-") + "-" + httpPort;
        if (id.length() > 60) {
            id = id.substring(0, 47) + "-" + shortHash(id);
        }
        return id;
    }

    static String shortHash(String value) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(value.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest, 0, 6);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    void start(@Observes @Priority(Integer.MAX_VALUE) StartupEvent event) {
        // collected here, not in the constructor: subscribers inject this connection themselves. By now SmallRye has
        // wired the channels (its StartupEvent observer runs at LIBRARY_BEFORE), so the ingest connector knows its
        // filters. @Any: that connector is qualified @Connector, so it is not a @Default bean
        subscriptionBeans.forEach(subscriptions::add);
        for (MqttSubscription s : subscriptions) {
            for (String filter : s.filters()) {
                filterOwners.put(filter, s);
            }
        }
        netClient = vertx.createNetClient(netClientOptions());
        context = vertx.getOrCreateContext();
        if (fixedClientId == null) {
            String idPrefix = config.clientIdPrefix().orElse("dgw-" + config.sharedGroup().orElse("gateway"));
            leases = new ClientIdLeases(vertx, redis.get(), redisKeyPrefix, idPrefix, config.leaseTtl(),
                    config.maxLeasedClientIds());
            goneTopicPrefix = config.goneTopic() + "/";
            adopter = new SessionAdopter(this, leases, vertx, context, config, adoptedSessions::increment);
            vertx.setPeriodic(Math.max(200, leases.ttlMillis() / 3), id -> context.runOnContext(v -> renewLease()));
            vertx.setPeriodic(config.adoptionInterval().toMillis(), id -> context.runOnContext(v -> adopter.scan()));
        }
        LOG.infof("MQTT %s to %s:%d%s as %s, subscriptions %s%s, receive maximum %d", config.protocolVersion(),
                config.host(), config.port(), tlsEnabled() ? " (TLS)" : "",
                fixedClientId != null ? "client id " + fixedClientId : "a client id leased from Redis",
                filterOwners.keySet(), config.sharedGroup().map(g -> " (shared group " + g + ")").orElse(""),
                config.receiveMaximum());
        context.runOnContext(v -> establish());
    }

    private boolean tlsEnabled() {
        return config.ssl() || config.tlsConfigurationName().isPresent();
    }

    /** TCP and TLS options; a named TLS configuration that does not exist stops the start with a clear message. */
    NetClientOptions netClientOptions() {
        NetClientOptions options = new NetClientOptions()
                .setConnectTimeout((int) config.connectTimeout().toMillis())
                .setTcpNoDelay(true);
        if (config.tlsConfigurationName().isPresent()) {
            String name = config.tlsConfigurationName().get();
            TlsConfiguration tls = tlsRegistry.get().get(name).orElseThrow(() -> new IllegalStateException(
                    "gateway.mqtt.tls-configuration-name=" + name + " but no quarkus.tls." + name
                            + ".* configuration exists"));
            options.setSsl(true);
            if (tls.getTrustStoreOptions() != null) {
                options.setTrustOptions(tls.getTrustStoreOptions());
            }
            if (tls.isTrustAll()) {
                options.setTrustAll(true);
            }
            if (tls.getKeyStoreOptions() != null) {
                options.setKeyCertOptions(tls.getKeyStoreOptions()); // mTLS: the gateway's client certificate
            }
            String algorithm = tls.getHostnameVerificationAlgorithm().orElse("HTTPS");
            options.setHostnameVerificationAlgorithm("NONE".equalsIgnoreCase(algorithm) ? "" : algorithm);
            if (tls.getSSLOptions() != null) {
                options.setEnabledSecureTransportProtocols(tls.getSSLOptions().getEnabledSecureTransportProtocols());
                tls.getSSLOptions().getEnabledCipherSuites().forEach(options::addEnabledCipherSuite);
            }
        } else if (config.ssl()) {
            options.setSsl(true).setHostnameVerificationAlgorithm("HTTPS"); // the JVM's trust store
        }
        return options;
    }

    /**
     * Graceful drain (SIGTERM, Knative scale-down). With a shared group, the replica first unsubscribes its shared
     * filters so the broker stops assigning messages to a session that is going away, and keeps reading what was
     * already assigned. Then it waits until what is in flight reached Kafka and its PUBACK went out, and the session
     * stayed quiet. A drained leased session is then discarded (nothing is left in it) and its id freed; one that
     * could not be drained in time keeps its messages on the broker, and a live replica adopts it. Without a shared
     * group the subscription stays, so the broker keeps queueing for the id while the instance restarts.
     */
    void drainAtOnce(@Observes @Priority(100) ShutdownDelayInitiatedEvent event) {
        // fired before Quarkus waits for open HTTP/gRPC calls (quarkus.shutdown.delay-enabled=true): a SendEvent
        // waiting minutes for a device must not hold the unsubscribe and drain back while the pod's grace period runs
        stop();
    }

    void stop(@Observes ShutdownEvent event) {
        stop(); // already done at SIGTERM unless shutdown came another way
    }

    private void stop() {
        if (!stopOnce.compareAndSet(false, true)) {
            return;
        }
        MqttLink current = link;
        boolean drained = false;
        if (current != null && current.connected()) {
            long deadline = System.nanoTime() + config.drainTimeout().toNanos();
            if (config.sharedGroup().isPresent()) {
                unsubscribeShared(current, deadline);
            } else {
                pauseInbound("drain");
            }
            while ((inFlight() > 0 || current.unacked() > 0 || !quiet()) && System.nanoTime() < deadline
                    && current.connected()) {
                LockSupport.parkNanos(10_000_000L);
            }
            // what the broker still counts unacknowledged (messages in flight to Kafka are among them)
            int left = Math.max(inFlight(), current.unacked());
            drained = left == 0 && config.sharedGroup().isPresent();
            onContextAndWait(() -> Future.succeededFuture()); // PUBACKs queued on the event loop go out first
            LOG.infof("MQTT drain done (%d message(s) left unacknowledged for redelivery); disconnecting", left);
        }
        stopping.set(true);
        boolean discard = drained && leases != null;
        if (current != null && current.connected()) {
            onContextAndWait(() -> current.disconnect(discard));
        }
        if (adopter != null) {
            onContextAndWait(adopter::stop);
        }
        int id = leasedId;
        if (leases != null && id >= 0) {
            onContextAndWait(() -> leases.release(id, instanceId, discard));
        }
    }

    private boolean quiet() {
        return System.nanoTime() - lastInboundNanos > QUIET_MILLIS * 1_000_000L;
    }

    /** UNSUBSCRIBE the shared filters and wait for the UNSUBACK; what the broker already assigned still arrives. */
    private void unsubscribeShared(MqttLink current, long deadline) {
        List<String> shared = new ArrayList<>();
        for (MqttSubscription s : subscriptions) {
            if (s.shared()) {
                s.filters().forEach(f -> shared.add("$share/" + config.sharedGroup().get() + "/" + f));
            }
        }
        long wait = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
        onContextAndWait(() -> current.unsubscribe(shared), Math.min(wait, 5_000));
        lastInboundNanos = System.nanoTime(); // what was assigned before the UNSUBACK is still on its way
    }

    private void onContextAndWait(java.util.function.Supplier<Future<?>> action) {
        onContextAndWait(action, 3_000);
    }

    private void onContextAndWait(java.util.function.Supplier<Future<?>> action, long timeoutMillis) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        context.runOnContext(v -> {
            try {
                action.get().onComplete(ar -> done.complete(null));
            } catch (RuntimeException e) {
                done.complete(null);
            }
        });
        done.orTimeout(timeoutMillis, TimeUnit.MILLISECONDS).exceptionally(e -> null).join();
    }

    private int inFlight() {
        int sum = 0;
        for (MqttSubscription s : subscriptions) {
            sum += s.inFlight();
        }
        return sum;
    }

    /** The current MQTT client id (leased or fixed); null until a lease is held. */
    public String clientId() {
        return clientId;
    }

    /** This gateway instance's name (pod name and port): what envelopes and results record as the gateway. */
    public String instanceId() {
        return instanceId;
    }

    /** Connected and every subscription granted. */
    public boolean ready() {
        return state.get() == 2;
    }

    /** Why the connection is not ready (last error), or "ok". */
    public String problem() {
        return ready() ? "ok" : problem;
    }

    boolean stopping() {
        return stopping.get();
    }

    int ownLeasedId() {
        return leasedId;
    }

    /** Gets a client id (leased, unless fixed), then connects. On the context. */
    private void establish() {
        if (stopping.get()) {
            return;
        }
        if (leases == null) {
            connect();
            return;
        }
        Future<Boolean> held = leasedId < 0 ? Future.succeededFuture(false) : leases.renew(leasedId, instanceId)
                .recover(e -> Future.succeededFuture(true)); // Redis down: nobody can take it meanwhile either
        held.compose(mine -> mine ? Future.succeededFuture(leasedId) : leases.acquire(instanceId))
                .onComplete(ar -> context.runOnContext(v -> {
                    if (ar.failed()) {
                        problem = "no MQTT client id: Redis lease failed: " + ar.cause().getMessage();
                        LOG.warnf("Cannot lease an MQTT client id from Redis (%s); retrying", ar.cause().getMessage());
                        scheduleReconnect();
                        return;
                    }
                    if (ar.result() != leasedId) {
                        leasedId = ar.result();
                        clientId = leases.clientId(leasedId);
                        LOG.infof("Leased MQTT client id %s for instance %s", clientId, instanceId);
                    }
                    connect();
                }));
    }

    private void renewLease() {
        int id = leasedId;
        if (leases == null || id < 0 || stopping.get()) {
            return;
        }
        leases.renew(id, instanceId).onComplete(ar -> context.runOnContext(v -> {
            if (ar.succeeded() && !ar.result() && id == leasedId && !stopping.get()) {
                // another instance holds it now (we were cut off from Redis longer than the TTL): never share an id
                LOG.warnf("Lost the lease on MQTT client id %s; reconnecting under a new one", clientId);
                leasedId = -1;
                MqttLink current = link;
                if (current != null) {
                    current.close("client id lease lost");
                }
            } else if (ar.failed()) {
                LOG.debugf("Could not renew the MQTT client id lease: %s", ar.cause().getMessage());
            }
        }));
    }

    MqttLink.Settings settings(String id, boolean cleanStart) {
        return new MqttLink.Settings(id, config.protocolVersion().equals("5"), cleanStart,
                config.username().orElse(null), config.password().orElse(null), config.keepAliveSeconds(),
                config.sessionExpiry().toSeconds(), config.receiveMaximum(), config.maxPacketSize(),
                config.maxOutboundInFlight(),
                config.connectTimeout().toMillis(), leases == null || cleanStart ? null : config.goneTopic() + "/" + id,
                instanceId, config.resendDropped(), probeTopic(id));
    }

    /**
     * Where a connection's sequence probes go (see MqttLink): under the gone topic, which the gateway's broker user
     * may already use, one level below it so that {@code <gone-topic>/+} does not match; only this session subscribes.
     */
    String probeTopic(String id) {
        return config.resendDropped() && config.protocolVersion().equals("5") && id != null
                ? config.goneTopic() + "/" + id + "/probe" : null;
    }

    private boolean isProbe(String topic) {
        return config.resendDropped() && topic.startsWith(config.goneTopic()) && topic.endsWith("/probe")
                && topic.length() > config.goneTopic().length() + 7 && topic.charAt(config.goneTopic().length()) == '/';
    }

    MqttLink newLink(String id, boolean cleanStart, MqttLink.Listener listener) {
        return new MqttLink(vertx, context, netClient, config.host(), config.port(), settings(id, cleanStart), listener);
    }

    private void connect() {
        if (stopping.get()) {
            return;
        }
        MqttLink attempt = newAttempt();
        if (resendNext != null) {
            attempt.expectResend();
            attempt.checkDeferredOf(resendNext);
            resendNext = null;
        }
        link = attempt;
        handshake(attempt, Future.succeededFuture());
    }

    private MqttLink newAttempt() {
        return newLink(clientId, false, new MqttLink.Listener() {
            @Override
            public void onPublish(InboundMessage message) {
                dispatch(message);
            }

            @Override
            public void onClosed(MqttLink closed, String why) {
                MqttConnection.this.onClosed(closed, why);
            }

            @Override
            public void onBrokerDropped(MqttLink dropping, int first, int last) {
                brokerDrops.increment(MqttLink.idCount(first, last));
            }

            @Override
            public void onBrokerLost(MqttLink resent, int count) {
                brokerLost.increment(count);
                // the broker is dropping what exceeds the window: answer the next gaps with one takeover, not one each
                resendHoldOffUntil = System.nanoTime() + config.resendHoldOff().toNanos();
            }

            @Override
            public void onBrokerResentLate(MqttLink resent, int count) {
                brokerResentLate.increment(count);
            }

            @Override
            public long resendHoldOffMillis(MqttLink dropping) {
                // paused reads need no check here: the link takes no hold-off once its reads were paused
                long left = resendHoldOffUntil - System.nanoTime();
                return left <= 0 ? 0 : Math.max(1, left / 1_000_000);
            }

            @Override
            public boolean takesOverForResend(MqttLink dropping) {
                return prepareResendLink(dropping);
            }

            @Override
            public void onResendBarrier(MqttLink dropping) {
                takeOverForResend(dropping);
            }
        });
    }

    /**
     * The dropping link's PUBACKs are all applied: the prepared connection sends its CONNECT now and takes the session
     * over while the old connection is still open, so the session is never without one (see MqttLink.Listener).
     */
    private void takeOverForResend(MqttLink dropping) {
        if (dropping != link || stopping.get()) {
            return;
        }
        MqttLink next = resendLink;
        Promise<Void> login = resendLogin;
        resendLink = null;
        resendLogin = null;
        if (next == null || next.isClosed()) {
            // no connection to take over with: close this one, and onClosed reconnects at once
            dropping.close("the next connection could not be opened");
            return;
        }
        LOG.infof("Reconnecting %s so that the broker resends the messages it dropped (taking the session over)",
                clientId);
        resendReconnects.increment();
        link = next;
        login.complete();
    }

    /** Opens the next connection's socket now; its CONNECT waits for the barrier (or for the old link's close). */
    private boolean prepareResendLink(MqttLink dropping) {
        if (dropping != link || stopping.get() || resendLink != null) {
            return false;
        }
        MqttLink next = newAttempt();
        if (dropping.firstSkipped() > 0) {
            next.expectResendFrom(dropping.firstSkipped());
        } else {
            next.expectResend();
        }
        next.checkDeferredOf(dropping);
        resendLink = next;
        resendLogin = Promise.promise();
        handshake(next, resendLogin.future());
        return true;
    }

    /** Connects {@code attempt} (CONNECT once {@code loginWhen} succeeds) and subscribes; on failure, retries. */
    private void handshake(MqttLink attempt, Future<Void> loginWhen) {
        attempt.connect(loginWhen).onSuccess(connAck -> {
            LOG.infof("MQTT connected to %s:%d as %s (session present: %s, broker receive maximum %d)", config.host(),
                    config.port(), clientId, connAck.sessionPresent(), connAck.serverReceiveMaximum());
            state.set(1);
            backoffMillis = config.reconnectInitialDelay().toMillis();
            if (inboundPaused) {
                attempt.readsPaused(true);
            }
            subscribe(attempt);
        }).onFailure(e -> {
            if (attempt != link) {
                return; // a prepared resend connection that was not used (onClosed falls back to a new one)
            }
            problem = describe(e);
            LOG.warnf("MQTT connect to %s:%d as %s failed: %s", config.host(), config.port(), clientId, problem);
            scheduleReconnect();
        });
    }

    /** A connection error as an operator can act on it. */
    private static String describe(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String message = e.getMessage();
        if (root instanceof javax.net.ssl.SSLException || root instanceof java.security.cert.CertificateException
                || e instanceof javax.net.ssl.SSLException) {
            return "TLS handshake with the broker failed: " + root.getMessage();
        }
        if (root != e && root.getMessage() != null && !root.getMessage().equals(message)) {
            return message + " (" + root.getMessage() + ")";
        }
        return message != null ? message : e.toString();
    }

    /** Every filter the gateway subscribes to, in the form it subscribes (shared where configured). */
    List<String> subscribedFilters() {
        return new ArrayList<>(filters().keySet());
    }

    private Map<String, Integer> filters() {
        Map<String, Integer> filters = new LinkedHashMap<>();
        for (MqttSubscription s : subscriptions) {
            for (String f : s.filters()) {
                filters.put(s.shared() && config.sharedGroup().isPresent()
                        ? "$share/" + config.sharedGroup().get() + "/" + f : f, 1);
            }
        }
        if (leases != null) {
            filters.put(config.goneTopic() + "/+", 1); // every replica hears of a gateway that died
        }
        String probe = probeTopic(clientId);
        if (probe != null) {
            filters.put(probe, 1);
        }
        return filters;
    }

    private void subscribe(MqttLink connected) {
        Map<String, Integer> filters = filters();
        if (filters.isEmpty()) {
            state.set(2);
            return;
        }
        connected.subscribe(filters).onSuccess(codes -> {
            if (codes.stream().anyMatch(code -> code >= 0x80)) {
                problem = "the broker refused a subscription " + filters.keySet() + ": reason codes " + codes;
                LOG.errorf("MQTT broker refused a subscription %s: reason codes %s", filters.keySet(), codes);
                return;
            }
            state.compareAndSet(1, 2);
        }).onFailure(e -> {
            if (connected == link) {
                LOG.warnf("MQTT subscribe failed: %s", e.getMessage());
            } else { // that connection was replaced meanwhile (a resend): the next one subscribes again
                LOG.debugf("MQTT subscribe on a replaced connection did not complete: %s", e.getMessage());
            }
        });
    }

    private void onClosed(MqttLink closed, String why) {
        if (closed != link) {
            return;
        }
        boolean wasUp = state.getAndSet(0) > 0;
        problem = why;
        MqttLink prepared = resendLink;
        Promise<Void> login = resendLogin;
        resendLink = null;
        resendLogin = null;
        if (closed.closedForResend() && !stopping.get()) {
            // not a failure: the same session at once, no backoff and no lease round trip (the lease is still ours;
            // its renewal closes the link if not); the broker resends from the first dropped message. Every
            // millisecond counts: while the session has no connection the broker drops new messages for it.
            LOG.infof("Reconnecting %s so that the broker resends the messages it dropped", clientId);
            resendReconnects.increment();
            if (prepared != null && !prepared.isClosed()) {
                link = prepared;
                login.complete();
            } else {
                if (prepared != null) {
                    login.tryFail(new IllegalStateException("not used"));
                }
                resendNext = closed;
                connect();
            }
            return;
        }
        if (prepared != null) {
            login.tryFail(new IllegalStateException("the connection closed for another reason: " + why));
            prepared.close("not used: " + why);
        }
        if (wasUp && !stopping.get()) {
            LOG.warnf("MQTT connection lost (%s); reconnecting", why);
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
        vertx.setTimer(Math.max(1, delay), id -> context.runOnContext(v -> establish()));
    }

    /** Hands a message to the capability whose filter it matches. On the context. */
    void dispatch(InboundMessage message) {
        if (isProbe(message.topic())) {
            message.ack(); // its packet id did its work in MqttLink
            return;
        }
        if (adopter != null && message.topic().startsWith(goneTopicPrefix)) {
            String gone = message.topic().substring(goneTopicPrefix.length());
            message.ack();
            if (!gone.equals(clientId)) {
                LOG.infof("The broker reports that the gateway connection %s died; adopting its session", gone);
                adopter.adoptNow(gone, new String(message.payloadBytes(), StandardCharsets.UTF_8));
            }
            return;
        }
        lastInboundNanos = System.nanoTime();
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
     * Stops reading from the broker on behalf of {@code holder} (a capability at its bound): the broker then holds
     * further messages (QoS 1 in its session, QoS 0 per its queue limits). Reads resume once every holder has
     * resumed. The MQTT 5 Receive Maximum already bounds QoS 1 in messages; this bounds bytes, QoS 0 floods and
     * 3.1.1. Any thread; on the event loop it takes effect at once.
     */
    public void pauseInbound(String holder) {
        onContext(() -> {
            if (pausedBy.add(holder) && !inboundPaused) {
                inboundPaused = true;
                applyReads();
            }
        });
    }

    public void resumeInbound(String holder) {
        onContext(() -> {
            if (pausedBy.remove(holder) && pausedBy.isEmpty() && inboundPaused) {
                inboundPaused = false;
                applyReads();
            }
        });
    }

    /** Whether {@code holder} currently holds reads paused (cheap; any thread). */
    public boolean inboundPausedBy(String holder) {
        return pausedBy.contains(holder);
    }

    private void applyReads() {
        MqttLink current = link;
        if (current != null) {
            current.readsPaused(inboundPaused);
        }
        if (adopter != null) {
            adopter.readsPaused(inboundPaused);
        }
    }

    /** Whether reads are paused at the in-flight bound (cheap; any thread). */
    public boolean inboundIsPaused() {
        return inboundPaused;
    }

    /** Inline when already on the connection's event loop: a pause must take effect before the next message. */
    private void onContext(Runnable action) {
        if (Vertx.currentContext() == context) {
            action.run();
        } else {
            context.runOnContext(v -> action.run());
        }
    }

    public Future<Void> publish(String topic, Buffer payload, int qos, boolean retain) {
        return publish(topic, payload, qos, retain, PublishOptions.NONE);
    }

    /**
     * Publishes on the current connection. Completes when the broker has acknowledged it (PUBACK for QoS 1,
     * PUBCOMP for QoS 2; at once for QoS 0 once written); fails fast when disconnected, fails if the connection
     * drops before the acknowledgement, and fails after {@code gateway.mqtt.publish-timeout}. Any thread.
     */
    public Future<Void> publish(String topic, Buffer payload, int qos, boolean retain, PublishOptions options) {
        Promise<Void> acknowledged = Promise.promise();
        byte[] bytes = payload.getBytes();
        onContext(() -> {
            MqttLink current = link;
            if (current == null || !ready()) {
                acknowledged.fail(new IllegalStateException("MQTT broker not connected"));
                return;
            }
            Future<Void> sent = current.publish(topic, bytes, qos, retain, options.toProperties());
            if (qos > 0) {
                long timer = vertx.setTimer(config.publishTimeout().toMillis(), id -> {
                    if (acknowledged.tryFail(new java.util.concurrent.TimeoutException(
                            "no acknowledgement from the broker within " + config.publishTimeout()))) {
                        current.abandon(sent);
                    }
                });
                sent.onComplete(ar -> vertx.cancelTimer(timer));
            }
            sent.onComplete(ar -> {
                if (ar.succeeded()) {
                    acknowledged.tryComplete();
                } else {
                    acknowledged.tryFail(ar.cause());
                }
            });
        });
        return acknowledged.future();
    }
}
