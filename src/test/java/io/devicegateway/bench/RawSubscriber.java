package io.devicegateway.bench;

import io.vertx.core.Vertx;
import io.vertx.mqtt.MqttClient;
import io.vertx.mqtt.MqttClientOptions;

/**
 * The broker's own limit: one plain subscriber on the same MQTT client library the gateway uses, acking on
 * receipt. What it receives per second is the ceiling the gateway is measured against.
 */
final class RawSubscriber implements AutoCloseable {

    final Tally tally = new Tally();
    private final Vertx vertx = Vertx.vertx();
    private final MqttClient client;

    RawSubscriber(String host, int port, String filter, String runId) {
        MqttClientOptions options = new MqttClientOptions().setClientId("raw-" + runId).setCleanSession(true)
                .setMaxMessageSize(268_435_455);
        long ackDelay = Long.getLong("bench.raw.ack-delay-ms", 0);
        options.setAutoAck(ackDelay == 0);
        client = MqttClient.create(vertx, options);
        client.publishHandler(p -> {
            if (ackDelay > 0) {
                long delay = 1 + java.util.concurrent.ThreadLocalRandom.current().nextLong(ackDelay);
                vertx.setTimer(delay, id -> p.ack()); // diagnostic: acks late and out of order, like Kafka completions
            }
            String topic = p.topicName();
            int start = topic.indexOf('/') + 1;
            tally.record(topic.substring(start, topic.indexOf('/', start)), p.payload().getByteBuf().nioBuffer());
        });
        client.connect(port, host).toCompletionStage().toCompletableFuture().join();
        java.util.concurrent.CompletableFuture<Void> subAck = new java.util.concurrent.CompletableFuture<>();
        client.subscribeCompletionHandler(ack -> subAck.complete(null));
        client.subscribe(filter, 1);
        subAck.orTimeout(10, java.util.concurrent.TimeUnit.SECONDS).join();
    }

    @Override
    public void close() {
        client.disconnect().toCompletionStage().toCompletableFuture().join();
        vertx.close().toCompletionStage().toCompletableFuture().join();
    }
}
