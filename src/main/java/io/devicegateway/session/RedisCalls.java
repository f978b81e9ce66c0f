package io.devicegateway.session;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeoutException;

import jakarta.inject.Singleton;

import org.eclipse.microprofile.config.inject.ConfigProperty;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * The Redis calls of sessions, queues and responses, each bounded by {@code quarkus.redis.timeout}. Quarkus applies
 * that timeout only to its blocking data source, not to the Vert.x {@link Redis} client used here, so a Redis that
 * accepts connections and never answers would otherwise hold a gRPC call, a flush or an MQTT ack forever.
 *
 * <p>Batches: on Redis Cluster ({@code quarkus.redis.client-type=cluster}) the client refuses a pipeline whose keys
 * span hash slots, so a batch is split per slot and the parts run a few at a time; elsewhere it is one pipeline.
 */
@Singleton
public class RedisCalls {

    /** Slots written at once when a batch is split for Redis Cluster. */
    private static final int PARALLEL_SLOTS = 16;

    private final Redis redis;
    private final Vertx vertx;
    private final long timeoutMillis;
    private final boolean cluster;

    RedisCalls(Redis redis, Vertx vertx,
            @ConfigProperty(name = "quarkus.redis.timeout", defaultValue = "10s") Duration timeout,
            @ConfigProperty(name = "quarkus.redis.client-type", defaultValue = "standalone") String clientType) {
        this.redis = redis;
        this.vertx = vertx;
        this.timeoutMillis = Math.max(1, timeout.toMillis());
        this.cluster = clientType.equalsIgnoreCase("cluster");
    }

    public long timeoutMillis() {
        return timeoutMillis;
    }

    /** One command; fails with a {@link TimeoutException} when Redis does not answer in time. */
    public Future<Response> send(Request request) {
        return bounded(redis.send(request));
    }

    /**
     * Several commands, answers in request order. {@code keys.get(i)} is a key request {@code i} touches (its slot
     * decides where it goes on Redis Cluster); commands of one slot keep their order.
     */
    public Future<List<Response>> batch(List<Request> requests, List<String> keys) {
        if (requests.isEmpty()) {
            return Future.succeededFuture(List.of());
        }
        if (!cluster) {
            return bounded(redis.batch(requests));
        }
        Map<Integer, List<Integer>> bySlot = new LinkedHashMap<>();
        for (int i = 0; i < requests.size(); i++) {
            bySlot.computeIfAbsent(slot(keys.get(i)), s -> new ArrayList<>()).add(i);
        }
        Response[] answers = new Response[requests.size()];
        List<List<Integer>> groups = new ArrayList<>(bySlot.values());
        Promise<List<Response>> done = Promise.promise();
        int[] next = { 0 };
        int[] running = { 0 };
        Runnable[] launch = new Runnable[1];
        launch[0] = () -> {
            synchronized (answers) {
                while (running[0] < PARALLEL_SLOTS && next[0] < groups.size() && !done.future().isComplete()) {
                    List<Integer> group = groups.get(next[0]++);
                    running[0]++;
                    List<Request> part = group.stream().map(requests::get).toList();
                    bounded(redis.batch(part)).onComplete(ar -> {
                        synchronized (answers) {
                            running[0]--;
                            if (ar.failed()) {
                                done.tryFail(ar.cause());
                                return;
                            }
                            for (int j = 0; j < group.size(); j++) {
                                answers[group.get(j)] = ar.result().get(j);
                            }
                            if (next[0] == groups.size() && running[0] == 0) {
                                done.tryComplete(Arrays.asList(answers));
                                return;
                            }
                        }
                        launch[0].run();
                    });
                }
            }
        };
        launch[0].run();
        return done.future();
    }

    private <T> Future<T> bounded(Future<T> call) {
        Promise<T> promise = Promise.promise();
        long timer = vertx.setTimer(timeoutMillis, id -> promise.tryFail(
                new TimeoutException("Redis did not answer within " + timeoutMillis + " ms (quarkus.redis.timeout)")));
        call.onComplete(ar -> {
            vertx.cancelTimer(timer);
            if (ar.succeeded()) {
                promise.tryComplete(ar.result());
            } else {
                promise.tryFail(ar.cause());
            }
        });
        return promise.future();
    }

    /** The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384. */
    static int slot(String key) {
        if (key == null) {
            return 0;
        }
        int open = key.indexOf('{');
        if (open >= 0) {
            int close = key.indexOf('}', open + 1);
            if (close > open + 1) {
                key = key.substring(open + 1, close);
            }
        }
        int crc = 0;
        for (byte b : key.getBytes(StandardCharsets.UTF_8)) {
            crc ^= (b & 0xff) << 8;
            for (int i = 0; i < 8; i++) {
                crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
            }
            crc &= 0xffff;
        }
        return crc & 16383;
    }
}
