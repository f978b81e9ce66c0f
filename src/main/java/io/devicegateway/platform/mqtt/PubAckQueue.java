package io.devicegateway.platform.mqtt;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;

import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.mqtt.MqttFixedHeader;
import io.netty.handler.codec.mqtt.MqttMessageFactory;
import io.netty.handler.codec.mqtt.MqttMessageIdVariableHeader;
import io.netty.handler.codec.mqtt.MqttMessageType;
import io.netty.handler.codec.mqtt.MqttQoS;
import io.vertx.core.Context;
import io.vertx.core.net.impl.NetSocketInternal;
import io.vertx.mqtt.messages.MqttPublishMessage;

/**
 * PUBACKs waiting to be written, one queue per connection. Kafka completes records on its own I/O thread in
 * batches; this hands a whole batch to the connection's event loop in one task instead of one task per message,
 * and writes the batch's PUBACKs with one flush (one syscall) instead of one flush each, when it can reach the
 * connection's channel; otherwise it falls back to the client's own per-message ack.
 */
final class PubAckQueue {

    private static final MqttFixedHeader PUBACK_HEADER = new MqttFixedHeader(MqttMessageType.PUBACK, false,
            MqttQoS.AT_MOST_ONCE, false, 2);

    private final Context context;
    private final NetSocketInternal socket;
    private final ConcurrentLinkedQueue<MqttPublishMessage> pending = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean scheduled = new AtomicBoolean();

    /** @param socket the connection's socket, or null to ack through the client */
    PubAckQueue(Context context, NetSocketInternal socket) {
        this.context = context;
        this.socket = socket;
    }

    void add(MqttPublishMessage message) {
        pending.add(message);
        if (scheduled.compareAndSet(false, true)) {
            context.runOnContext(v -> drain());
        }
    }

    private void drain() {
        scheduled.set(false);
        ChannelHandlerContext channel = socket == null ? null : socket.channelHandlerContext();
        MqttPublishMessage message;
        int written = 0;
        while ((message = pending.poll()) != null) {
            try {
                if (channel != null) {
                    channel.write(MqttMessageFactory.newMessage(PUBACK_HEADER,
                            MqttMessageIdVariableHeader.from(message.messageId()), null));
                    written++;
                } else {
                    message.ack();
                }
            } catch (RuntimeException closed) {
                // that connection is gone: the broker redelivers the message on the next one
            }
        }
        if (written > 0) {
            channel.flush();
        }
    }
}
