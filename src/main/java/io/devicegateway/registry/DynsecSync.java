package io.devicegateway.registry;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;

import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

/**
 * Keeps Mosquitto's dynamic-security clients equal to the registry (the registry is the truth). A device is a broker
 * client named by its id with one role {@code <role-prefix><id>} ({@link DeviceRights#dynsecAcls}), enabled or
 * disabled like the device; a deleted device's client and role are deleted.
 *
 * <p>{@link #sync} converges one device: it reads the device from Redis, asks the broker for the client, sends what
 * differs and, if the device changed meanwhile (its revision moved), does it again, so two instances syncing the
 * same device concurrently still end on its latest state. Registry RPCs call it after every change.
 *
 * <p>Passwords: dynsec hashes passwords itself, so it must receive each one. A new password is sealed in the
 * device's Redis record ({@link PendingSecrets}) until the broker acknowledged it, then deleted; a change made while
 * the broker is unreachable is therefore applied by {@link #reconcile}, which runs on every (re)connect and every
 * {@code reconcile-interval} (one instance at a time, under a Redis lock): it lists the broker's clients and syncs
 * every device that differs (missing, enabled state, role, a pending password) and every managed client (one that
 * holds a role with the prefix) the registry no longer has.
 */
@Singleton
public class DynsecSync {

    private static final Logger LOG = Logger.getLogger(DynsecSync.class);
    private static final int MAX_ROUNDS = 5;
    private static final int CHUNK = 500;
    /** Broker clients per listClients answer (verbose, about 150 bytes each: far below the packet limit). */
    private static final int LIST_PAGE = 1000;
    static final String DESCRIPTION = "device-gateway registry";

    private final boolean enabled;
    private final DynsecClient dynsec;
    private final RegistryStore store;
    private final MqttConnection connection;
    private final Vertx vertx;
    private final RegistryConfig.MosquittoDynsec config;
    private final PendingSecrets secrets;
    private final String rolePrefix;
    private final Counter syncFailures;
    private final Counter reconciles;
    private final Counter missingPasswords;
    private final AtomicBoolean reconcileRunning = new AtomicBoolean();
    private final AtomicBoolean reconcileRequested = new AtomicBoolean();
    private ExecutorService reconciler;
    private volatile boolean wasConnected;
    private volatile boolean stopped;
    private Set<String> previousOrphans = Set.of();
    private long pollTimer = -1;
    private long periodicTimer = -1;

    DynsecSync(RegistryConfig config, DynsecClient dynsec, RegistryStore store, MqttConnection connection, Vertx vertx,
            MeterRegistry registry) {
        this.config = config.mosquittoDynsec();
        this.enabled = this.config.enabled();
        this.dynsec = dynsec;
        this.store = store;
        this.connection = connection;
        this.vertx = vertx;
        this.rolePrefix = this.config.rolePrefix();
        if (enabled && this.config.pendingKey().filter(k -> !k.isBlank()).isEmpty()) {
            throw new IllegalStateException("gateway.registry.mosquitto-dynsec.enabled=true needs "
                    + "gateway.registry.mosquitto-dynsec.pending-key (base64 of 32 random bytes, from a Secret): it "
                    + "encrypts passwords in Redis until the broker has confirmed them");
        }
        this.secrets = enabled ? PendingSecrets.fromBase64(this.config.pendingKey().get()) : null;
        this.syncFailures = Counter.builder("gateway.registry.broker.sync.failures")
                .description("Device changes the broker did not confirm at once (applied by reconciliation)")
                .register(registry);
        this.reconciles = Counter.builder("gateway.registry.broker.reconciliations")
                .description("Full registry-to-broker reconciliations run by this instance").register(registry);
        this.missingPasswords = Counter.builder("gateway.registry.broker.missing.passwords")
                .description("Devices recreated on the broker without a password (unknown here): rotate them")
                .register(registry);
    }

    boolean enabled() {
        return enabled;
    }

    /** The sealed form of a new password for the device record, or null without dynsec. */
    String seal(String deviceId, String password) {
        return enabled ? secrets.seal(deviceId, password) : null;
    }

    void start(@Observes StartupEvent event) {
        if (!enabled) {
            return;
        }
        reconciler = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "registry-dynsec-reconcile");
            t.setDaemon(true);
            return t;
        });
        LOG.infof("Mosquitto dynamic security on: devices are broker clients with role %s<id>; reconciliation on "
                + "every connect and every %s", rolePrefix, config.reconcileInterval());
        pollTimer = vertx.setPeriodic(500, id -> {
            boolean now = dynsec.connected();
            if (now && !wasConnected) {
                requestReconcile("broker (re)connected");
            }
            wasConnected = now;
        });
        periodicTimer = vertx.setPeriodic(config.reconcileInterval().toMillis(), id -> requestReconcile("periodic"));
    }

    void stop(@Observes ShutdownEvent event) {
        stopped = true;
        if (pollTimer >= 0) {
            vertx.cancelTimer(pollTimer);
            vertx.cancelTimer(periodicTimer);
        }
        if (reconciler != null) {
            reconciler.shutdownNow();
        }
    }

    /**
     * Converges the broker on the device's current registry state. Completes when the broker confirmed it; fails
     * (the change stays recorded, reconciliation applies it) when the broker is unreachable or did not answer.
     */
    Future<Void> sync(String id) {
        if (!enabled) {
            return Future.succeededFuture();
        }
        return syncRound(id, 0).onFailure(e -> {
            syncFailures.increment();
            LOG.warnf("Broker not updated for device %s (%s); reconciliation will apply it", id, e.getMessage());
            if (dynsec.connected()) {
                vertx.setTimer(10_000, t -> requestReconcile("a device change the broker did not confirm"));
            }
        });
    }

    private Future<Void> syncRound(String id, int round) {
        return store.get(id).compose(found -> dynsec.send(List.of(new JsonObject().put("command", "getClient")
                .put("username", id))).compose(answer -> {
                    JsonObject response = answer.getJsonObject(0);
                    JsonObject client = response.getString("error") == null && response.getJsonObject("data") != null
                            ? response.getJsonObject("data").getJsonObject("client") : null;
                    RegistryStore.Stored device = found.orElse(null);
                    if (client != null && !managed(client, id)) {
                        return Future.failedFuture(new IllegalStateException("broker client '" + id + "' exists and "
                                + "was not created by the registry (no role " + rolePrefix + id + "): left alone"));
                    }
                    List<JsonObject> commands = commands(id, device, client);
                    String sentPending = device != null && device.pending() != null ? device.pending() : null;
                    Future<JsonArray> sent = commands.isEmpty() ? Future.succeededFuture(new JsonArray())
                            : dynsec.send(commands);
                    return sent.compose(responses -> {
                        String error = firstUnexpectedError(responses);
                        if (error != null) {
                            return Future.failedFuture(new IllegalStateException("broker refused: " + error));
                        }
                        Future<Void> cleared = sentPending == null ? Future.succeededFuture()
                                : store.clearPending(id, sentPending);
                        return cleared.compose(v -> store.get(id)).compose(after -> {
                            long before = device == null ? -1 : device.revision();
                            long now = after.map(RegistryStore.Stored::revision).orElse(-1L);
                            if (now == before || round + 1 >= MAX_ROUNDS) {
                                return Future.<Void> succeededFuture();
                            }
                            return syncRound(id, round + 1); // changed meanwhile: converge on the newer state
                        });
                    });
                }));
    }

    /** The commands that turn the broker's client ({@code client}, null if absent) into the registry's device. */
    private List<JsonObject> commands(String id, RegistryStore.Stored device, JsonObject client) {
        String role = rolePrefix + id;
        List<JsonObject> commands = new ArrayList<>();
        if (device == null) {
            if (client != null) {
                commands.add(new JsonObject().put("command", "deleteClient").put("username", id));
            }
            commands.add(new JsonObject().put("command", "deleteRole").put("rolename", role));
            return commands;
        }
        commands.add(new JsonObject().put("command", "createRole").put("rolename", role)
                .put("acls", DeviceRights.dynsecAcls(id)));
        String password = device.pending() == null ? null : secrets.open(id, device.pending());
        if (device.pending() != null && password == null) {
            LOG.errorf("The pending password of device %s cannot be decrypted (another pending-key?): rotate it", id);
        }
        if (client == null) {
            JsonObject create = new JsonObject().put("command", "createClient").put("username", id)
                    .put("textdescription", DESCRIPTION)
                    .put("roles", new JsonArray().add(new JsonObject().put("rolename", role)));
            if (password != null) {
                create.put("password", password);
            } else {
                missingPasswords.increment();
                LOG.errorf("Device %s is missing on the broker and its password is not known here (the broker lost "
                        + "its dynamic-security file?): created without a password; RotateCredentials restores it", id);
            }
            commands.add(create);
            if (!device.enabled()) {
                commands.add(new JsonObject().put("command", "disableClient").put("username", id));
            }
            return commands;
        }
        if (password != null) {
            commands.add(new JsonObject().put("command", "setClientPassword").put("username", id)
                    .put("password", password));
        }
        if (!hasRole(client, role)) {
            commands.add(new JsonObject().put("command", "addClientRole").put("username", id).put("rolename", role));
        }
        boolean brokerDisabled = client.getBoolean("disabled", false);
        if (brokerDisabled == device.enabled()) {
            commands.add(new JsonObject().put("command", device.enabled() ? "enableClient" : "disableClient")
                    .put("username", id));
        }
        return commands;
    }

    /** A client the registry created: it holds the device's role or carries the registry's description. */
    private boolean managed(JsonObject client, String id) {
        return hasRole(client, rolePrefix + id) || DESCRIPTION.equals(client.getString("textdescription"));
    }

    private static boolean hasRole(JsonObject client, String role) {
        JsonArray roles = client.getJsonArray("roles", new JsonArray());
        for (int i = 0; i < roles.size(); i++) {
            if (role.equals(roles.getJsonObject(i).getString("rolename"))) {
                return true;
            }
        }
        return false;
    }

    /** Errors that mean the broker already is in the wanted state are fine; anything else is reported. */
    private static String firstUnexpectedError(JsonArray responses) {
        for (int i = 0; i < responses.size(); i++) {
            JsonObject r = responses.getJsonObject(i);
            String error = r.getString("error");
            if (error == null || error.equals("Role already exists") || error.equals("Role not found")
                    || error.equals("Client not found") && "deleteClient".equals(r.getString("command"))) {
                continue;
            }
            return r.getString("command") + ": " + error;
        }
        return null;
    }

    /** Asks for a full reconciliation; runs once more after the current one if asked while it runs. */
    void requestReconcile(String why) {
        if (!enabled || stopped) {
            return;
        }
        reconcileRequested.set(true);
        if (!reconcileRunning.compareAndSet(false, true)) {
            return;
        }
        reconciler.execute(() -> {
            try {
                while (reconcileRequested.getAndSet(false) && !stopped) {
                    reconcileOnce(why);
                }
            } finally {
                reconcileRunning.set(false);
                if (reconcileRequested.get() && !stopped) {
                    requestReconcile(why);
                }
            }
        });
    }

    /** On the reconciler thread (blocking waits are fine here). */
    private void reconcileOnce(String why) {
        if (!dynsec.connected()) {
            return; // the next connect asks again
        }
        String owner = connection.instanceId() + "/" + System.nanoTime();
        long lockMillis = Math.max(60_000, config.requestTimeout().toMillis() * 6);
        try {
            if (!await(store.tryLock(owner, lockMillis))) {
                LOG.debugf("Reconciliation (%s) skipped: another instance runs it", why);
                return;
            }
        } catch (Exception e) {
            LOG.warnf("Reconciliation (%s) postponed: Redis unavailable (%s)", why, e.getMessage());
            reconcileLater();
            return;
        }
        long start = System.nanoTime();
        int synced = 0;
        int failed = 0;
        try {
            Map<String, JsonObject> brokerClients = listBrokerClients();
            Set<String> registered = new HashSet<>();
            Set<String> orphans = new HashSet<>();
            List<String> toSync = new ArrayList<>();
            String after = null;
            while (true) {
                List<String> ids = await(store.ids(null, after, null, CHUNK));
                if (ids.isEmpty()) {
                    break;
                }
                List<RegistryStore.Stored> devices = await(store.getAll(ids));
                for (int i = 0; i < ids.size(); i++) {
                    RegistryStore.Stored d = devices.get(i);
                    if (d == null) {
                        orphans.add(ids.get(i));
                        continue;
                    }
                    registered.add(d.id());
                    JsonObject c = brokerClients.get(d.id());
                    if (c == null || d.pending() != null || c.getBoolean("disabled", false) == d.enabled()
                            || !hasRole(c, rolePrefix + d.id())) {
                        toSync.add(d.id());
                    }
                }
                after = ids.get(ids.size() - 1);
                if (ids.size() < CHUNK) {
                    break;
                }
            }
            for (Map.Entry<String, JsonObject> c : brokerClients.entrySet()) {
                if (!registered.contains(c.getKey()) && hasRole(c.getValue(), rolePrefix + c.getKey())) {
                    toSync.add(c.getKey()); // managed by the registry, deleted there
                }
            }
            for (String id : toSync) {
                if (stopped) {
                    return;
                }
                try {
                    await(syncRound(id, 0));
                    synced++;
                } catch (Exception e) {
                    failed++;
                    LOG.warnf("Reconciliation could not sync device %s: %s", id, e.getMessage());
                }
            }
            // index entries naming no device twice in a row: a registration that died half way, or a delete
            Set<String> stale = new HashSet<>(orphans);
            stale.retainAll(previousOrphans);
            await(store.removeFromIndexIfAbsent(new ArrayList<>(stale)));
            orphans.removeAll(stale);
            previousOrphans = orphans;
            reconciles.increment();
            LOG.infof("Broker reconciliation (%s): %d registered devices, %d broker clients, %d synced, %d failed in "
                    + "%d ms", why, registered.size(), brokerClients.size(), synced, failed,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
            if (failed > 0) {
                reconcileLater();
            }
        } catch (Exception e) {
            LOG.warnf("Broker reconciliation (%s) failed: %s; retrying", why, e.getMessage());
            reconcileLater();
        } finally {
            try {
                await(store.unlock(owner));
            } catch (Exception e) {
                LOG.debugf("Reconciliation lock not released (expires by itself): %s", e.getMessage());
            }
        }
    }

    /**
     * Every client of the broker, a page at a time: one answer with all of them could exceed the gateway's MQTT 5
     * Maximum Packet Size, and the broker would drop it.
     */
    private Map<String, JsonObject> listBrokerClients() throws Exception {
        Map<String, JsonObject> brokerClients = new HashMap<>();
        int offset = 0;
        while (true) {
            JsonObject listing = await(dynsec.send(List.of(new JsonObject().put("command", "listClients")
                    .put("verbose", true).put("count", LIST_PAGE).put("offset", offset)))).getJsonObject(0);
            if (listing.getString("error") != null) {
                throw new IllegalStateException("listClients: " + listing.getString("error"));
            }
            JsonObject data = listing.getJsonObject("data", new JsonObject());
            JsonArray clients = data.getJsonArray("clients", new JsonArray());
            for (int i = 0; i < clients.size(); i++) {
                JsonObject c = clients.getJsonObject(i);
                brokerClients.put(c.getString("username"), c);
            }
            offset += clients.size();
            if (clients.isEmpty() || offset >= data.getInteger("totalCount", 0)) {
                return brokerClients;
            }
        }
    }

    private void reconcileLater() {
        if (!stopped) {
            vertx.setTimer(10_000, t -> requestReconcile("retry"));
        }
    }

    private <T> T await(Future<T> future) throws Exception {
        return future.toCompletionStage().toCompletableFuture().get(config.requestTimeout().toMillis() * 3,
                TimeUnit.MILLISECONDS);
    }
}
