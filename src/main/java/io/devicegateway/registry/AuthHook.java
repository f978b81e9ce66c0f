package io.devicegateway.registry;

import java.security.MessageDigest;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;

import org.jboss.logging.Logger;

import io.devicegateway.command.AgentTokens;
import io.devicegateway.contract.DeviceIds;
import io.devicegateway.session.RedisCalls;
import io.devicegateway.session.RedisKeys;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * The auth hook for brokers that ask over HTTP (EMQX HTTP authentication and authorization, mosquitto-go-auth's HTTP
 * backend), on the HTTP port, only when {@code gateway.registry.auth-hook.secret} is set:
 * <ul>
 * <li>{@code POST /mqtt/auth} {@code {"clientid","username","password"}}: allow when the username is a registered,
 * enabled device and the password is its current one;</li>
 * <li>{@code POST /mqtt/acl} {@code {"clientid","username","topic","action":"publish"|"subscribe"}} (or
 * mosquitto-go-auth's {@code "acc"}: 1 read, 2 write, 4 subscribe): allow what {@link DeviceRights} allows an
 * enabled device.</li>
 * </ul>
 * Answers {@code 200 {"result":"allow"|"deny","ok":true|false}} ({@code ok} for mosquitto-go-auth's JSON mode);
 * {@code 401} without the shared secret ({@code Authorization: Bearer <secret>}), {@code 400} for a body it cannot
 * read, {@code 503} when Redis does not answer or too many slow verifications run (the broker then falls back to its
 * next authenticator or denies). Each call reads the device's record (one Redis call); the slow hash runs only on a
 * cache miss ({@link CredentialCache}), on {@code max-concurrent-verifications} threads of its own with at most
 * {@code max-queued-verifications} waiting (a fleet reconnecting after a restart queues; beyond that, 503).
 */
@Singleton
public class AuthHook {

    private static final Logger LOG = Logger.getLogger(AuthHook.class);
    private static final int MAX_BODY = 16 * 1024;
    /** A verification that waited this long is dropped (503): brokers time their HTTP calls out around 5 s. */
    private static final long STALE_NANOS = TimeUnit.SECONDS.toNanos(4);

    private final RegistryConfig.AuthHook config;
    private final RedisCalls redis;
    private final RedisKeys keys;
    private final CredentialCache cache;
    private final Vertx vertx;
    private final MeterRegistry registry;
    /** The slow verifications: a few threads and a bounded queue; beyond it a cache miss is answered 503. */
    private final ThreadPoolExecutor verifications;
    private final byte[] secretHash;
    private Timer authTimer;
    private Timer aclTimer;

    AuthHook(RegistryConfig config, RedisCalls redis, RedisKeys keys, CredentialCache cache, Vertx vertx,
            MeterRegistry registry) {
        this.config = config.authHook();
        this.redis = redis;
        this.keys = keys;
        this.cache = cache;
        this.vertx = vertx;
        this.registry = registry;
        int threads = Math.max(1, this.config.maxConcurrentVerifications());
        AtomicInteger n = new AtomicInteger();
        this.verifications = new ThreadPoolExecutor(threads, threads, 1, TimeUnit.MINUTES,
                new ArrayBlockingQueue<>(Math.max(1, this.config.maxQueuedVerifications())), r -> {
                    Thread t = new Thread(r, "registry-hook-verify-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
        this.verifications.allowCoreThreadTimeOut(true);
        this.secretHash = this.config.secret().filter(s -> !s.isBlank()).map(AgentTokens::sha256).orElse(null);
    }

    void routes(@Observes Router router) {
        if (secretHash == null) {
            LOG.debug("MQTT auth hook off (gateway.registry.auth-hook.secret not set)");
            return;
        }
        authTimer = timer("auth");
        aclTimer = timer("acl");
        router.post("/mqtt/auth").handler(BodyHandler.create(false).setBodyLimit(MAX_BODY)).handler(this::auth);
        router.post("/mqtt/acl").handler(BodyHandler.create(false).setBodyLimit(MAX_BODY)).handler(this::acl);
        LOG.info("MQTT auth hook on: POST /mqtt/auth and /mqtt/acl answer from the device registry");
    }

    private Timer timer(String endpoint) {
        return Timer.builder("gateway.registry.hook.latency").tag("endpoint", endpoint)
                .description("Auth hook call duration").publishPercentiles(0.5, 0.99)
                .register(registry);
    }

    private void auth(RoutingContext ctx) {
        long start = System.nanoTime();
        JsonObject body = readBody(ctx);
        if (body == null) {
            return;
        }
        String username = body.getValue("username") instanceof String s ? s : null;
        String password = body.getValue("password") instanceof String s ? s : null;
        if (username == null || password == null) {
            badRequest(ctx, "username and password (strings) are required");
            return;
        }
        if (!DeviceIds.isValid(username) || password.isEmpty()) {
            answer(ctx, false, authTimer, start);
            return;
        }
        redis.send(Request.cmd(Command.HMGET).arg(keys.device(username)).arg("enabled").arg("secret"))
                .onFailure(e -> unavailable(ctx, e))
                .onSuccess(r -> {
                    String enabled = text(r, 0);
                    String stored = text(r, 1);
                    if (!"1".equals(enabled) || stored == null) {
                        cache.invalidate(username);
                        answer(ctx, false, authTimer, start);
                        return;
                    }
                    byte[] mac = cache.mac(password);
                    if (cache.isVerified(username, stored, mac)) {
                        answer(ctx, true, authTimer, start);
                        return;
                    }
                    io.vertx.core.Context context = vertx.getOrCreateContext();
                    try {
                        verifications.execute(() -> {
                            if (System.nanoTime() - start > STALE_NANOS) {
                                // the broker gave up on this call long ago: do not spend a slow hash on it
                                context.runOnContext(v -> busy(ctx));
                                return;
                            }
                            boolean ok = DevicePasswords.verify(password, stored);
                            context.runOnContext(v -> {
                                if (ok) {
                                    cache.remember(username, stored, mac);
                                }
                                answer(ctx, ok, authTimer, start);
                            });
                        });
                    } catch (RejectedExecutionException full) {
                        busy(ctx);
                    }
                });
    }

    private void acl(RoutingContext ctx) {
        long start = System.nanoTime();
        JsonObject body = readBody(ctx);
        if (body == null) {
            return;
        }
        String username = body.getValue("username") instanceof String s ? s : null;
        String topic = body.getValue("topic") instanceof String s ? s : null;
        String action = action(body);
        if (username == null || topic == null || action == null) {
            badRequest(ctx, "username, topic and action (\"publish\" or \"subscribe\"; or acc 1, 2, 4) are required");
            return;
        }
        boolean permitted = DeviceIds.isValid(username) && switch (action) {
            case "publish" -> DeviceRights.mayPublish(username, topic);
            case "subscribe" -> DeviceRights.maySubscribe(username, topic);
            default -> DeviceRights.mayReceive(username, topic);
        };
        if (!permitted) {
            answer(ctx, false, aclTimer, start);
            return;
        }
        redis.send(Request.cmd(Command.HGET).arg(keys.device(username)).arg("enabled"))
                .onFailure(e -> unavailable(ctx, e))
                .onSuccess(r -> answer(ctx, r != null && "1".equals(r.toString()), aclTimer, start));
    }

    /** "publish", "subscribe", "receive" (acc 1), or null when missing or unknown. */
    private static String action(JsonObject body) {
        Object action = body.getValue("action");
        if (action instanceof String s) {
            return s.equals("publish") || s.equals("subscribe") ? s : null;
        }
        Object acc = body.getValue("acc");
        if (acc instanceof Number n) {
            return switch (n.intValue()) {
                case 1 -> "receive";
                case 2 -> "publish";
                case 4 -> "subscribe";
                default -> null;
            };
        }
        return null;
    }

    private JsonObject readBody(RoutingContext ctx) {
        String header = ctx.request().getHeader("authorization");
        if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)
                || !MessageDigest.isEqual(secretHash, AgentTokens.sha256(header.substring(7).trim()))) {
            ctx.response().setStatusCode(401).putHeader("content-type", "application/json")
                    .putHeader("www-authenticate", "Bearer")
                    .end("{\"result\":\"deny\",\"ok\":false,\"error\":\"missing or wrong shared secret "
                            + "(Authorization: Bearer <gateway.registry.auth-hook.secret>)\"}");
            return null;
        }
        try {
            JsonObject body = ctx.body().asJsonObject();
            if (body == null) {
                badRequest(ctx, "empty body: a JSON object is required");
            }
            return body;
        } catch (RuntimeException e) {
            badRequest(ctx, "the body is not a JSON object");
            return null;
        }
    }

    private static void badRequest(RoutingContext ctx, String why) {
        ctx.response().setStatusCode(400).putHeader("content-type", "application/json")
                .end(new JsonObject().put("result", "deny").put("ok", false).put("error", why).encode());
    }

    private static void busy(RoutingContext ctx) {
        ctx.response().setStatusCode(503).putHeader("content-type", "application/json").putHeader("retry-after", "1")
                .end("{\"result\":\"ignore\",\"ok\":false,\"error\":\"busy verifying passwords\"}");
    }

    private static void unavailable(RoutingContext ctx, Throwable e) {
        LOG.debugf("Auth hook: registry unavailable: %s", e.getMessage());
        ctx.response().setStatusCode(503).putHeader("content-type", "application/json")
                .end("{\"result\":\"ignore\",\"ok\":false,\"error\":\"registry unavailable\"}");
    }

    private static void answer(RoutingContext ctx, boolean allow, Timer timer, long start) {
        ctx.response().setStatusCode(200).putHeader("content-type", "application/json")
                .end(allow ? "{\"result\":\"allow\",\"ok\":true}" : "{\"result\":\"deny\",\"ok\":false}");
        timer.record(System.nanoTime() - start, TimeUnit.NANOSECONDS);
    }

    private static String text(Response r, int index) {
        if (r == null || r.size() <= index) {
            return null;
        }
        Response item = r.get(index);
        return item == null ? null : item.toString();
    }

}
