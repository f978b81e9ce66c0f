package io.devicegateway.platform.mqtt;

import java.util.Iterator;

import org.jboss.logging.Logger;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;

/**
 * Takes over broker sessions whose gateway is gone (killed and never replaced, or replaced under a new name). Two
 * triggers: at once, when the broker publishes the gone connection's will on {@code gateway.mqtt.gone-topic} (the
 * broker keeps routing shared-group messages to a disconnected session, and a stock Mosquitto drops all but 1000
 * queued ones, so every second counts); and, as a backstop, every {@code gateway.mqtt.adoption-interval}, for a
 * leased client id with a session but no live holder. The adopter claims the id's adoption (one adopter at a time),
 * connects with that id and a persistent
 * session, unsubscribes every gateway filter (so the broker stops routing new messages to it), processes what the
 * broker redelivers through the normal subscriptions (PUBACK after Kafka, as always), and once nothing is left in
 * flight and the session stays quiet, disconnects discarding the session and forgets the id. One session at a time
 * per replica; a failure leaves the session on the broker for the next scan.
 */
final class SessionAdopter {

    private static final Logger LOG = Logger.getLogger(SessionAdopter.class);

    private final MqttConnection connection;
    private final ClientIdLeases leases;
    private final Vertx vertx;
    private final Context context;
    private final MqttConfig config;
    private final Runnable onAdopted;
    private final String owner;

    // on the context only
    private boolean busy;
    private MqttLink adopting;
    private int adoptingId = -1;
    private long lastMessageNanos;
    private long startedNanos;
    private long pollTimer = -1;
    private long renewTimer = -1;
    private boolean finished;
    private boolean discarding;

    SessionAdopter(MqttConnection connection, ClientIdLeases leases, Vertx vertx, Context context, MqttConfig config,
            Runnable onAdopted) {
        this.connection = connection;
        this.leases = leases;
        this.vertx = vertx;
        this.context = context;
        this.config = config;
        this.onAdopted = onAdopted;
        this.owner = connection.instanceId() + "/adopting";
    }

    private final java.util.ArrayDeque<Integer> urgent = new java.util.ArrayDeque<>();

    /**
     * The broker published the will of a gateway connection that died: take its session over now, before the
     * broker's per-session queue overflows. A holder that is in fact alive (a network blip) simply takes its session
     * back when it reconnects; at worst some messages are redelivered. On the context.
     */
    void adoptNow(String clientId, String diedInstance) {
        int id = leases.idNumber(clientId);
        if (id < 0 || id == connection.ownLeasedId() || connection.stopping()) {
            return;
        }
        // only the will of the id's lease holder counts: an adopter's own connection, kicked off when the holder
        // takes its session back, also leaves a will, and acting on it would make the two take turns forever
        if (!busy) {
            busy = true; // check and claim in one round trip, then connect
            leases.claimAdoptionOfDead(id, diedInstance, owner).onComplete(ar -> context.runOnContext(v -> {
                if (ar.succeeded() && ar.result() && !connection.stopping()) {
                    adopt(id);
                } else {
                    nextUrgent();
                }
            }));
            return;
        }
        leases.owner(id).onComplete(ar -> context.runOnContext(v -> {
            if (ar.succeeded() && (ar.result() == null || ar.result().equals(diedInstance))) {
                adoptUrgently(id);
            }
        }));
    }

    private void adoptUrgently(int id) {
        if (busy) {
            if (!urgent.contains(id) && id != adoptingId) {
                urgent.add(id);
            }
            return;
        }
        busy = true;
        claimFirst(java.util.List.of(id).iterator());
    }

    /** Looks for one orphaned session and adopts it. On the context. */
    void scan() {
        if (busy || !connection.ready() || connection.stopping()) {
            return;
        }
        if (!urgent.isEmpty()) {
            busy = true;
            claimFirst(java.util.List.of(urgent.poll()).iterator());
            return;
        }
        busy = true;
        leases.orphans().onComplete(ar -> context.runOnContext(v -> {
            if (ar.failed() || ar.result().isEmpty()) {
                busy = false;
                return;
            }
            claimFirst(ar.result().iterator());
        }));
    }

    private void claimFirst(Iterator<Integer> candidates) {
        if (!candidates.hasNext() || connection.stopping()) {
            busy = false;
            return;
        }
        int id = candidates.next();
        if (id == connection.ownLeasedId()) {
            claimFirst(candidates);
            return;
        }
        leases.claimAdoption(id, owner).onComplete(ar -> context.runOnContext(v -> {
            if (ar.succeeded() && ar.result()) {
                adopt(id);
            } else {
                claimFirst(candidates);
            }
        }));
    }

    private void adopt(int id) {
        String clientId = leases.clientId(id);
        adoptingId = id;
        finished = false;
        discarding = false;
        startedNanos = System.nanoTime();
        lastMessageNanos = startedNanos;
        renewTimer = vertx.setPeriodic(Math.max(200, leases.ttlMillis() / 3),
                t -> leases.renewAdoption(id, owner).onSuccess(mine -> {
                    if (!mine) {
                        context.runOnContext(v -> finish(false, "adoption claim lost"));
                    }
                }));
        MqttLink link = connection.newLink(clientId, false, new MqttLink.Listener() {
            @Override
            public void onPublish(InboundMessage message) {
                lastMessageNanos = System.nanoTime();
                connection.dispatch(message);
            }

            @Override
            public void onClosed(MqttLink closed, String why) {
                if (closed == adopting && !discarding) {
                    finish(false, why);
                }
            }
        });
        adopting = link;
        if (connection.inboundIsPaused()) {
            link.readsPaused(true);
        }
        link.connect().onSuccess(connAck -> {
            if (!connAck.sessionPresent()) {
                LOG.debugf("Client id %s has no session on the broker; forgetting it", clientId);
                discard(link).onComplete(x -> finish(true, "no session"));
                return;
            }
            LOG.infof("Adopting the broker session of %s, whose gateway instance is gone; draining it", clientId);
            onAdopted.run();
            link.unsubscribe(connection.subscribedFilters()).onComplete(x -> {
                lastMessageNanos = System.nanoTime(); // what was assigned before the UNSUBACK is still on its way
                pollTimer = vertx.setPeriodic(100, t -> context.runOnContext(v -> poll(link)));
            });
        }).onFailure(e -> finish(false, "connect failed: " + e.getMessage()));
    }

    private void poll(MqttLink link) {
        if (finished || link != adopting) {
            return;
        }
        long now = System.nanoTime();
        if (link.unacked() == 0 && now - lastMessageNanos > MqttConnection.QUIET_MILLIS * 1_000_000L) {
            LOG.infof("Drained the adopted session of %s in %d ms; discarding it", link.clientId(),
                    (now - startedNanos) / 1_000_000);
            discard(link).onComplete(x -> finish(true, "drained"));
        } else if (now - startedNanos > config.drainTimeout().toNanos() * 3) {
            link.disconnect(false).onComplete(x -> finish(false, "not drained in time; left on the broker"));
        }
    }

    /** Ends the session on the broker: MQTT 5 sets its expiry to 0; 3.1.1 reconnects with a clean session. */
    private Future<Void> discard(MqttLink link) {
        discarding = true;
        if (link.mqtt5()) {
            return link.disconnect(true);
        }
        Promise<Void> done = Promise.promise();
        link.disconnect(false).onComplete(x -> {
            MqttLink clean = connection.newLink(link.clientId(), true, new MqttLink.Listener() {
                @Override
                public void onPublish(InboundMessage message) {
                    message.ack(); // a clean session has nothing of ours
                }

                @Override
                public void onClosed(MqttLink closed, String why) {
                    done.tryComplete();
                }
            });
            clean.connect().onComplete(ar -> clean.disconnect(false).onComplete(y -> done.tryComplete()));
        });
        return done.future();
    }

    private void finish(boolean sessionGone, String why) {
        if (finished) {
            return;
        }
        finished = true;
        int id = adoptingId;
        if (pollTimer >= 0) {
            vertx.cancelTimer(pollTimer);
            pollTimer = -1;
        }
        if (renewTimer >= 0) {
            vertx.cancelTimer(renewTimer);
            renewTimer = -1;
        }
        MqttLink link = adopting;
        adopting = null;
        adoptingId = -1;
        if (link != null && link.connected()) {
            link.disconnect(false); // a DISCONNECT, so the broker does not publish this connection's will
        }
        if (!sessionGone) {
            LOG.infof("Adoption of client id %s ended: %s", leases.clientId(id), why);
        }
        leases.endAdoption(id, owner, sessionGone).onComplete(ar -> context.runOnContext(v -> nextUrgent()));
    }

    /** Done with one id: the next will that arrived meanwhile, if any. On the context. */
    private void nextUrgent() {
        busy = false;
        if (!urgent.isEmpty() && !connection.stopping()) {
            busy = true;
            claimFirst(java.util.List.of(urgent.poll()).iterator());
        }
    }

    void readsPaused(boolean paused) {
        MqttLink link = adopting;
        if (link != null) {
            link.readsPaused(paused);
        }
    }

    /** Shutdown: leave the session on the broker for another replica. On the context. */
    Future<Void> stop() {
        MqttLink link = adopting;
        if (link == null) {
            return Future.succeededFuture();
        }
        Promise<Void> done = Promise.promise();
        link.disconnect(false).onComplete(x -> {
            finish(false, "shutting down");
            done.tryComplete();
        });
        return done.future();
    }

}
