package io.devicegateway.registry;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeoutException;
import java.util.regex.Pattern;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

import io.devicegateway.command.AgentTokens;
import io.devicegateway.command.TokenAuthInterceptor;
import io.devicegateway.contract.DeviceIds;
import io.devicegateway.v1.DeleteDeviceResponse;
import io.devicegateway.v1.Device;
import io.devicegateway.v1.DeviceRef;
import io.devicegateway.v1.DeviceRegistry;
import io.devicegateway.v1.ListDevicesRequest;
import io.devicegateway.v1.ListDevicesResponse;
import io.devicegateway.v1.RegisterDeviceRequest;
import io.devicegateway.v1.RegisterDeviceResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.quarkus.grpc.GrpcService;
import io.smallrye.mutiny.Uni;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;

/**
 * {@code devicegateway.v1.DeviceRegistry} on the HTTP port, behind the same bearer tokens as DeviceGateway
 * ({@link TokenAuthInterceptor} covers every {@code devicegateway.*} service); a scoped agent manages and lists only
 * devices in its scope. Each change is one script on the device's Redis record, then a record on
 * {@code iot.registry} and, with dynsec, the broker update; the call answers once both confirmed or after
 * {@code gateway.registry.sync-timeout} (the change is recorded either way; see {@link DynsecSync}).
 */
@GrpcService
public class DeviceRegistryService implements DeviceRegistry {

    private static final Logger LOG = Logger.getLogger(DeviceRegistryService.class);
    static final int MAX_LABELS = 32;
    static final int MAX_LABEL_VALUE = 256;
    private static final Pattern LABEL_KEY = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._/-]{0,62}");
    private static final String TOKEN_PREFIX = "v1:";

    private final RegistryStore store;
    private final RegistryEvents events;
    private final DynsecSync dynsec;
    private final CredentialCache cache;
    private final Vertx vertx;
    private final RegistryConfig config;
    private final Optional<String> gatewayUser;
    private final Timer hashTimer;

    DeviceRegistryService(RegistryStore store, RegistryEvents events, DynsecSync dynsec, CredentialCache cache,
            Vertx vertx, RegistryConfig config, MeterRegistry registry,
            @ConfigProperty(name = "gateway.mqtt.username") Optional<String> gatewayUser) {
        this.store = store;
        this.events = events;
        this.dynsec = dynsec;
        this.cache = cache;
        this.vertx = vertx;
        this.config = config;
        this.gatewayUser = gatewayUser;
        if (config.passwordHashIterations() < 10_000) {
            throw new IllegalArgumentException("gateway.registry.password-hash-iterations must be at least 10000, not "
                    + config.passwordHashIterations());
        }
        this.hashTimer = Timer.builder("gateway.registry.password.hash").description("PBKDF2 hashing of a new password")
                .publishPercentiles(0.5, 0.99).register(registry);
    }

    @Override
    public Uni<RegisterDeviceResponse> registerDevice(RegisterDeviceRequest request) {
        String id = request.getDeviceId();
        JsonObject labels;
        try {
            checkId(id);
            labels = checkLabels(request.getLabelsMap(), "labels");
            if (gatewayUser.isPresent() && gatewayUser.get().equals(id)) {
                throw invalid("device_id '" + id + "' is the gateway's own broker user name (gateway.mqtt.username)");
            }
            permit(id);
            checkAccepting();
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        String password = DevicePasswords.generate();
        Future<RegisterDeviceResponse> done = hash(password).compose(secret -> store.register(id, labels,
                System.currentTimeMillis(), secret, dynsec.seal(id, password))).compose(created -> {
                    if (!created) {
                        return Future.failedFuture(Status.ALREADY_EXISTS
                                .withDescription("device '" + id + "' is already registered (RotateCredentials issues "
                                        + "a new password)").asRuntimeException());
                    }
                    cache.invalidate(id);
                    return store.get(id);
                }).compose(stored -> propagate("registered", id, stored.orElseThrow(() -> notFound(id))))
                .map(synced -> RegisterDeviceResponse.newBuilder().setDeviceId(id).setUsername(id)
                        .setPassword(password).build());
        LOG.debugf("RegisterDevice %s", id);
        return uni(done);
    }

    @Override
    public Uni<RegisterDeviceResponse> rotateCredentials(DeviceRef request) {
        String id = request.getDeviceId();
        try {
            checkChange(id);
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        String password = DevicePasswords.generate();
        Future<RegisterDeviceResponse> done = hash(password)
                .compose(secret -> store.rotate(id, System.currentTimeMillis(), secret, dynsec.seal(id, password)))
                .compose(stored -> {
                    cache.invalidate(id);
                    return propagate("credentials-rotated", id, stored.orElseThrow(() -> notFound(id)));
                }).map(synced -> RegisterDeviceResponse.newBuilder().setDeviceId(id).setUsername(id)
                        .setPassword(password).build());
        return uni(done);
    }

    @Override
    public Uni<Device> disableDevice(DeviceRef request) {
        return setEnabled(request.getDeviceId(), false);
    }

    @Override
    public Uni<Device> enableDevice(DeviceRef request) {
        return setEnabled(request.getDeviceId(), true);
    }

    private Uni<Device> setEnabled(String id, boolean enabled) {
        try {
            checkChange(id);
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        Future<Device> done = store.setEnabled(id, enabled).compose(change -> {
            RegistryStore.Change c = change.orElseThrow(() -> notFound(id));
            cache.invalidate(id);
            if (!c.changed()) {
                // already so: nothing to record, but make sure the broker agrees
                return within(dynsec.sync(id)).map(synced -> toDevice(c.device(), !synced));
            }
            return propagate(enabled ? "enabled" : "disabled", id, c.device())
                    .map(synced -> toDevice(c.device(), !synced));
        });
        return uni(done);
    }

    @Override
    public Uni<DeleteDeviceResponse> deleteDevice(DeviceRef request) {
        String id = request.getDeviceId();
        try {
            checkChange(id);
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        Future<DeleteDeviceResponse> done = store.delete(id).compose(deleted -> {
            if (!deleted) {
                return Future.failedFuture(notFound(id));
            }
            cache.invalidate(id);
            return propagate("deleted", id, null).map(synced -> DeleteDeviceResponse.getDefaultInstance());
        });
        return uni(done);
    }

    /** What every change to an existing device checks first: a valid id, in the agent's scope, Kafka taking records. */
    private void checkChange(String id) {
        checkId(id);
        permit(id);
        checkAccepting();
    }

    @Override
    public Uni<Device> getDevice(DeviceRef request) {
        String id = request.getDeviceId();
        try {
            checkId(id);
            permit(id);
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        return uni(store.get(id).map(stored -> toDevice(stored.orElseThrow(() -> notFound(id)),
                stored.get().pending() != null)));
    }

    @Override
    public Uni<ListDevicesResponse> listDevices(ListDevicesRequest request) {
        AgentTokens.Agent agent = TokenAuthInterceptor.currentAgent();
        int pageSize;
        String after;
        JsonObject selector;
        try {
            if (agent == null) {
                throw Status.UNAUTHENTICATED.withDescription("no agent").asRuntimeException();
            }
            if (request.getPageSize() < 0) {
                throw invalid("page_size must be 0 (default 100) to " + config.maxPageSize() + ", not "
                        + request.getPageSize());
            }
            pageSize = request.getPageSize() == 0 ? 100 : Math.min(request.getPageSize(), config.maxPageSize());
            after = request.getPageToken().isEmpty() ? null : decodeToken(request.getPageToken());
            selector = checkLabels(request.getLabelSelectorMap(), "label_selector");
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        String scope = agent.scope();
        String min = scope.isEmpty() ? null : scope;
        String max = scope.isEmpty() ? null : scope + '\u007f'; // above every id character
        ListDevicesResponse.Builder page = ListDevicesResponse.newBuilder();
        int budget = 10 * pageSize + 1000; // ids looked at per page before answering a short page
        return uni(listPage(page, agent, selector, min, after, max, pageSize, budget));
    }

    private Future<ListDevicesResponse> listPage(ListDevicesResponse.Builder page, AgentTokens.Agent agent,
            JsonObject selector, String min, String after, String max, int pageSize, int budget) {
        int want = Math.min(Math.max(pageSize - page.getDevicesCount(), 1) + 1, 1000);
        return store.ids(min, after, max, want).compose(ids -> {
            if (ids.isEmpty()) {
                return Future.succeededFuture(page.build());
            }
            return store.getAll(ids).compose(devices -> {
                String last = null;
                for (int i = 0; i < ids.size(); i++) {
                    last = ids.get(i);
                    RegistryStore.Stored d = devices.get(i);
                    if (d == null || !agent.mayAddress(d.id()) || !matches(d.labels(), selector)) {
                        continue;
                    }
                    page.addDevices(toDevice(d, d.pending() != null));
                    if (page.getDevicesCount() == pageSize) {
                        boolean more = i < ids.size() - 1 || ids.size() == want;
                        return Future.succeededFuture(more ? page.setNextPageToken(encodeToken(last)).build()
                                : page.build());
                    }
                }
                int left = budget - ids.size();
                if (ids.size() < want) {
                    return Future.succeededFuture(page.build()); // end of the index
                }
                if (left <= 0) {
                    return Future.succeededFuture(page.setNextPageToken(encodeToken(last)).build());
                }
                return listPage(page, agent, selector, min, last, max, pageSize, left);
            });
        });
    }

    private static boolean matches(JsonObject labels, JsonObject selector) {
        for (String key : selector.fieldNames()) {
            if (!selector.getString(key).equals(labels.getString(key))) {
                return false;
            }
        }
        return true;
    }

    /** Kafka record and broker update, each bounded; true when the broker confirmed (or dynsec is off). */
    private Future<Boolean> propagate(String change, String id, RegistryStore.Stored device) {
        Future<Void> record = device == null ? events.deleted(id) : events.changed(change, toDevice(device, false));
        Future<Boolean> broker = within(dynsec.sync(id));
        return record.transform(ar -> broker);
    }

    /** True when {@code future} succeeded within the sync timeout; never fails. */
    private Future<Boolean> within(Future<Void> future) {
        Promise<Boolean> done = Promise.promise();
        long timer = vertx.setTimer(config.syncTimeout().toMillis(), t -> done.tryComplete(false));
        future.onComplete(ar -> {
            vertx.cancelTimer(timer);
            done.tryComplete(ar.succeeded());
        });
        return done.future();
    }

    private Future<String> hash(String password) {
        long start = System.nanoTime();
        return vertx.executeBlocking(() -> DevicePasswords.hash(password, config.passwordHashIterations()), false)
                .onSuccess(h -> hashTimer.record(System.nanoTime() - start, java.util.concurrent.TimeUnit.NANOSECONDS));
    }

    static Device toDevice(RegistryStore.Stored d, boolean brokerPending) {
        Device.Builder b = Device.newBuilder().setDeviceId(d.id()).setEnabled(d.enabled())
                .setCreatedAtMs(d.createdAtMs()).setCredentialsRotatedAtMs(d.rotatedAtMs()).setRevision(d.revision())
                .setBrokerSyncPending(brokerPending);
        for (String key : d.labels().fieldNames()) {
            Object value = d.labels().getValue(key);
            b.putLabels(key, value == null ? "" : value.toString());
        }
        return b.build();
    }

    private static void checkId(String id) {
        if (!DeviceIds.isValid(id)) {
            throw invalid("device_id must match [A-Za-z0-9._:-]{1,128}"
                    + (id == null || id.isEmpty() ? " (it is empty)" : ""));
        }
    }

    static JsonObject checkLabels(Map<String, String> labels, String field) {
        if (labels.size() > MAX_LABELS) {
            throw invalid(field + ": at most " + MAX_LABELS + " labels, not " + labels.size());
        }
        JsonObject json = new JsonObject();
        for (Map.Entry<String, String> e : new java.util.TreeMap<>(labels).entrySet()) {
            if (!LABEL_KEY.matcher(e.getKey()).matches()) {
                throw invalid(field + ": key '" + e.getKey() + "' must match [A-Za-z0-9][A-Za-z0-9._/-]{0,62}");
            }
            String value = e.getValue();
            if (value.length() > MAX_LABEL_VALUE) {
                throw invalid(field + ": value of '" + e.getKey() + "' is longer than " + MAX_LABEL_VALUE
                        + " characters");
            }
            if (value.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
                throw invalid(field + ": value of '" + e.getKey() + "' contains a control character");
            }
            json.put(e.getKey(), value);
        }
        return json;
    }

    private static void permit(String id) {
        AgentTokens.Agent agent = TokenAuthInterceptor.currentAgent();
        if (agent == null) {
            throw Status.UNAUTHENTICATED.withDescription("no agent").asRuntimeException();
        }
        if (!agent.mayAddress(id)) {
            throw Status.PERMISSION_DENIED.withDescription("agent " + agent.name() + " may only manage "
                    + agent.scopeDescription()).asRuntimeException();
        }
    }

    private void checkAccepting() {
        if (!events.accepting()) {
            throw Status.UNAVAILABLE.withDescription("iot.registry records cannot be written (Kafka down or "
                    + "refusing); retry later").asRuntimeException();
        }
    }

    private static String encodeToken(String lastId) {
        return Base64.getUrlEncoder().withoutPadding()
                .encodeToString((TOKEN_PREFIX + lastId).getBytes(StandardCharsets.UTF_8));
    }

    private static String decodeToken(String token) {
        try {
            String decoded = new String(Base64.getUrlDecoder().decode(token), StandardCharsets.UTF_8);
            if (decoded.startsWith(TOKEN_PREFIX) && DeviceIds.isValid(decoded.substring(TOKEN_PREFIX.length()))) {
                return decoded.substring(TOKEN_PREFIX.length());
            }
        } catch (IllegalArgumentException e) {
            // below
        }
        throw invalid("page_token is not one ListDevices issued (pass next_page_token unchanged)");
    }

    private static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }

    private static StatusRuntimeException notFound(String id) {
        return Status.NOT_FOUND.withDescription("device '" + id + "' is not registered").asRuntimeException();
    }

    private static <T> Uni<T> uni(Future<T> future) {
        return Uni.createFrom().completionStage(future.recover(e -> Future.failedFuture(status(e)))
                .toCompletionStage());
    }

    private static StatusRuntimeException status(Throwable e) {
        if (e instanceof StatusRuntimeException s) {
            return s;
        }
        if (e instanceof TimeoutException) {
            return Status.UNAVAILABLE.withDescription(e.getMessage()).asRuntimeException();
        }
        LOG.debugf("Registry call failed: %s", e.toString());
        return Status.UNAVAILABLE.withDescription("registry unavailable (Redis): " + e.getMessage())
                .asRuntimeException();
    }
}
