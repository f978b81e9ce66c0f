package io.devicegateway.platform.mqtt;

import java.util.Iterator;

import org.jboss.logging.Logger;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;

/**
 * Takes over broker sessions whose gateway is gone for good (killed and never replaced, or replaced under a new
 * name while its lease was still running). Every replica looks every {@code gateway.mqtt.adoption-interval} for a
 * leased client id with a session but no live holder, claims its lease, connects with that id and a persistent
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

    /** Looks for one orphaned session and adopts it. On the context. */
    void scan() {
        if (busy || !connection.ready() || connection.stopping()) {
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
        leases.claim(id, owner).onComplete(ar -> context.runOnContext(v -> {
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
                t -> leases.renew(id, owner).onSuccess(mine -> {
                    if (!mine) {
                        context.runOnContext(v -> finish(false, "lease taken by another instance"));
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
        if (connection.inboundPaused()) {
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
            link.close(why);
        }
        if (!sessionGone) {
            LOG.infof("Adoption of client id %s ended: %s", leases.clientId(id), why);
        }
        leases.release(id, owner, sessionGone).onComplete(ar -> context.runOnContext(v -> busy = false));
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
