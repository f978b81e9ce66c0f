package io.devicegateway.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A loopback TCP proxy that can turn into a black hole: it keeps accepting connections and reading what is sent,
 * but nothing reaches the server and nothing comes back (a stalled server, or a network path that silently drops
 * packets). Connections that were black-holed stay dead after {@link #blackHole(boolean) blackHole(false)}, as
 * after a middlebox lost their state; new ones are forwarded again.
 */
public final class TcpBlackHole implements AutoCloseable {

    private final ServerSocket server;
    private final int targetPort;
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();
    private volatile int generation;
    private volatile boolean black;

    public TcpBlackHole(int targetPort) throws IOException {
        this.targetPort = targetPort;
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread acceptor = new Thread(this::accept, "tcp-black-hole");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    public int port() {
        return server.getLocalPort();
    }

    /** On: every connection, open or new, goes silent. Off: new connections are forwarded again. */
    public void blackHole(boolean on) {
        if (on) {
            generation++;
        }
        black = on;
    }

    private void accept() {
        while (!server.isClosed()) {
            try {
                Socket client = server.accept();
                sockets.add(client);
                if (black) {
                    start(() -> swallow(client));
                    continue;
                }
                Socket target = new Socket(InetAddress.getLoopbackAddress(), targetPort);
                sockets.add(target);
                int born = generation;
                start(() -> pipe(client, target, born));
                start(() -> pipe(target, client, born));
            } catch (IOException closed) {
                return;
            }
        }
    }

    /** Copies until the connection is black-holed; from then on reads and drops. */
    private void pipe(Socket from, Socket to, int born) {
        byte[] buffer = new byte[16384];
        try (from; to) {
            InputStream in = from.getInputStream();
            OutputStream out = to.getOutputStream();
            int n;
            while ((n = in.read(buffer)) >= 0) {
                if (generation == born) {
                    out.write(buffer, 0, n);
                    out.flush();
                }
            }
        } catch (IOException closed) {
            // connection gone
        }
    }

    private static void swallow(Socket client) {
        byte[] buffer = new byte[16384];
        try (client) {
            InputStream in = client.getInputStream();
            while (in.read(buffer) >= 0) {
                // read and drop: the peer sees a server that accepts and never answers
            }
        } catch (IOException closed) {
            // connection gone
        }
    }

    private static void start(Runnable task) {
        Thread t = new Thread(task, "tcp-black-hole-pipe");
        t.setDaemon(true);
        t.start();
    }

    @Override
    public void close() {
        try {
            server.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        for (Socket s : sockets) {
            try {
                s.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }
}
