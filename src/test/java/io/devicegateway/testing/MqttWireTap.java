package io.devicegateway.testing;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP proxy between the gateway and the broker that decodes the MQTT packets the gateway sends and records
 * every PUBACK with its packet id and time. It forwards bytes unchanged; the test reads what was on the wire.
 */
public final class MqttWireTap implements AutoCloseable {

    /** A PUBACK the gateway sent to the broker. */
    public record PubAck(int packetId, long atMillis) {
    }

    private static final int PUBLISH = 3;
    private static final int PUBACK = 4;
    private final ServerSocket server;
    private final int brokerPort;
    private final List<PubAck> pubAcks = new CopyOnWriteArrayList<>();
    private final java.util.Set<Integer> probeDeliveries = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();

    public MqttWireTap(int brokerPort) throws IOException {
        this.brokerPort = brokerPort;
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread acceptor = new Thread(this::accept, "mqtt-wire-tap");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    public int port() {
        return server.getLocalPort();
    }

    public List<PubAck> pubAcks() {
        return List.copyOf(pubAcks);
    }

    private void accept() {
        while (!server.isClosed()) {
            try {
                Socket client = server.accept();
                Socket broker = new Socket(InetAddress.getLoopbackAddress(), brokerPort);
                client.setTcpNoDelay(true);
                broker.setTcpNoDelay(true);
                sockets.add(client);
                sockets.add(broker);
                start(() -> decodeAndForward(client.getInputStream(), broker.getOutputStream()), client, broker);
                start(() -> forwardFromBroker(broker.getInputStream(), client.getOutputStream()), client, broker);
            } catch (IOException closed) {
                return;
            }
        }
    }

    private interface Pump {
        void run() throws IOException;
    }

    private static void start(Pump pump, Socket a, Socket b) {
        Thread t = new Thread(() -> {
            try {
                pump.run();
            } catch (IOException ignored) {
                // either side closed
            } finally {
                closeQuietly(a);
                closeQuietly(b);
            }
        }, "mqtt-wire-tap-pump");
        t.setDaemon(true);
        t.start();
    }

    /** One MQTT packet as read off the wire: fixed header byte, the remaining-length bytes as sent, the rest. */
    private record Packet(int header, byte[] lengthBytes, int lengthSize, byte[] body) {
        static Packet read(DataInputStream in) throws IOException {
            int header = in.readUnsignedByte();
            int length = 0;
            int multiplier = 1;
            byte[] lengthBytes = new byte[4];
            int n = 0;
            int b;
            do {
                b = in.readUnsignedByte();
                lengthBytes[n++] = (byte) b;
                length += (b & 0x7f) * multiplier;
                multiplier *= 128;
            } while ((b & 0x80) != 0);
            byte[] body = new byte[length];
            in.readFully(body);
            return new Packet(header, lengthBytes, n, body);
        }

        void writeTo(OutputStream out) throws IOException {
            out.write(header);
            out.write(lengthBytes, 0, lengthSize);
            out.write(body);
        }
    }

    private void decodeAndForward(InputStream from, OutputStream to) throws IOException {
        DataInputStream in = new DataInputStream(from);
        while (true) {
            Packet packet = Packet.read(in);
            int header = packet.header();
            byte[] body = packet.body();
            int length = body.length;
            if ((header >> 4) == PUBACK && length >= 2) {
                int packetId = ((body[0] & 0xff) << 8) | (body[1] & 0xff);
                if (!probeDeliveries.remove(packetId)) {
                    pubAcks.add(new PubAck(packetId, System.currentTimeMillis()));
                }
            }
            packet.writeTo(to);
            to.flush();
        }
    }

    /**
     * Broker to gateway: forwarded as is, but the packet ids of the gateway's own sequence probes (QoS 1 messages on
     * {@code <gone-topic>/<client id>/probe}, see MqttLink) are noted, so that their PUBACKs are not counted as
     * acknowledgements of device messages.
     */
    private void forwardFromBroker(InputStream from, OutputStream to) throws IOException {
        DataInputStream in = new DataInputStream(new java.io.BufferedInputStream(from, 16384));
        java.io.BufferedOutputStream out = new java.io.BufferedOutputStream(to, 16384);
        while (true) {
            Packet packet = Packet.read(in);
            int header = packet.header();
            byte[] body = packet.body();
            int length = body.length;
            if ((header >> 4) == PUBLISH && ((header >> 1) & 3) > 0 && length >= 2) {
                int topicLength = ((body[0] & 0xff) << 8) | (body[1] & 0xff);
                String topic = new String(body, 2, topicLength, java.nio.charset.StandardCharsets.UTF_8);
                if (topic.endsWith("/probe")) {
                    probeDeliveries.add(((body[2 + topicLength] & 0xff) << 8) | (body[3 + topicLength] & 0xff));
                }
            }
            packet.writeTo(out);
            if (in.available() == 0) {
                out.flush();
            }
        }
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closing
        }
    }

    @Override
    public void close() {
        closeQuietly2(server);
        sockets.forEach(MqttWireTap::closeQuietly);
    }

    private static void closeQuietly2(ServerSocket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closing
        }
    }
}
