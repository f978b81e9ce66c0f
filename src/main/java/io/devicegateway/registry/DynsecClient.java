package io.devicegateway.registry;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.inject.Singleton;

import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

/**
 * Mosquitto dynamic-security commands over the gateway's own MQTT connection: a batch of commands is published
 * (QoS 1) to {@code $CONTROL/dynamic-security/v1}; the broker answers every command of it in one message on
 * {@code $CONTROL/dynamic-security/v1/response}, which every admin subscriber receives, so each command carries
 * correlation data {@code <instance>/<batch>/<index>} and other instances' answers are ignored. Commands may carry
 * passwords: they are never logged.
 */
@Singleton
public class DynsecClient implements MqttSubscription {

    static final String REQUEST_TOPIC = "$CONTROL/dynamic-security/v1";
    static final String RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response";
    private static final Logger LOG = Logger.getLogger(DynsecClient.class);

    private final boolean enabled;
    private final MqttConnection connection;
    private final Vertx vertx;
    private final long timeoutMillis;
    private final String prefix = java.util.UUID.randomUUID().toString().substring(0, 8);
    private final AtomicLong batches = new AtomicLong();
    private final Map<Long, Promise<JsonArray>> waiting = new ConcurrentHashMap<>();

    DynsecClient(RegistryConfig config, MqttConnection connection, Vertx vertx) {
        this.enabled = config.mosquittoDynsec().enabled();
        this.connection = connection;
        this.vertx = vertx;
        this.timeoutMillis = config.mosquittoDynsec().requestTimeout().toMillis();
    }

    @Override
    public List<String> filters() {
        return enabled ? List.of(RESPONSE_TOPIC) : List.of();
    }

    @Override
    public boolean shared() {
        return false; // every instance must see the answers to its own commands
    }

    boolean connected() {
        return connection.ready();
    }

    /**
     * Sends the commands as one batch; completes with the broker's responses in command order (each may carry an
     * {@code error}), fails when the broker is not connected or does not answer within the request timeout.
     */
    Future<JsonArray> send(List<JsonObject> commands) {
        long batch = batches.incrementAndGet();
        JsonArray array = new JsonArray();
        for (int i = 0; i < commands.size(); i++) {
            array.add(commands.get(i).copy().put("correlationData", prefix + "/" + batch + "/" + i));
        }
        Promise<JsonArray> answer = Promise.promise();
        waiting.put(batch, answer);
        long timer = vertx.setTimer(timeoutMillis, id -> {
            if (waiting.remove(batch) != null) {
                answer.tryFail(new TimeoutException("no dynamic-security response from the broker within "
                        + timeoutMillis + " ms"));
            }
        });
        answer.future().onComplete(ar -> vertx.cancelTimer(timer));
        connection.publish(REQUEST_TOPIC, Buffer.buffer(new JsonObject().put("commands", array).encode()), 1, false)
                .onFailure(e -> {
                    waiting.remove(batch);
                    answer.tryFail(e);
                });
        return answer.future();
    }

    @Override
    public void onMessage(InboundMessage message) {
        message.ack();
        JsonArray responses;
        try {
            responses = new JsonObject(message.payload()).getJsonArray("responses");
        } catch (RuntimeException e) {
            LOG.debugf("Unreadable dynamic-security response ignored: %s", e.getMessage());
            return;
        }
        if (responses == null || responses.isEmpty()) {
            return;
        }
        Object first = responses.getJsonObject(0).getValue("correlationData");
        if (!(first instanceof String correlation) || !correlation.startsWith(prefix + "/")) {
            return; // another instance's (or mosquitto_ctrl's) answer
        }
        String[] parts = correlation.split("/");
        Promise<JsonArray> answer;
        try {
            answer = waiting.remove(Long.parseLong(parts[1]));
        } catch (RuntimeException e) {
            return;
        }
        if (answer != null) {
            answer.tryComplete(responses);
        }
    }
}
