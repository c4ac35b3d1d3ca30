/*
 * qt_peer: a real Qt 5 QLocalServer / QLocalSocket for lsock's interop tests
 * (tests/test_interop.c), which start it with fork/exec and talk to it two ways:
 *
 *   - in band, over each connection, with a line protocol (below) that both roles speak;
 *   - out of band: qt_peer reports events as lines on its stdout.
 *
 * Usage:
 *   qt_peer server NAME [--access none|user|group|other|world] [--abstract] [--timeout MS]
 *   qt_peer client NAME [--count N] [--abstract] [--timeout MS]
 *   qt_peer remove NAME                       QLocalServer::removeServer(NAME)
 *   qt_peer waits NAME [--abstract]           connectToServer(NAME) without a loop, then each
 *                                             waitFor*(100): "waits R E R E R E R E R E" (below)
 *
 * --abstract (Qt 6.2+): QLocalServer/QLocalSocket::AbstractNamespaceOption; a Qt 5 build says
 * "unsupported abstract" and exits 1.
 *
 * Every connection starts by sending "hello <id>\n" (ids count from 1). Then it obeys lines:
 *   line TEXT      reply "echo TEXT\n"
 *   expect N       the next N bytes are binary; then reply "got N SUM\n"
 *   send N         write N bytes of the test pattern
 *   sendclose N    write N pattern bytes, then disconnectFromServer()
 *   sendabort N    write N pattern bytes, abort() at the first bytesWritten (mid-transfer)
 *   readabort N    read N bytes (discarded), then abort()
 *   close          disconnectFromServer()
 *   abort          abort()
 *   messages       from now on the connection carries QDataStream QByteArrays, read with
 *                  startTransaction() / commitTransaction(): each is echoed back the same way
 *                  (the payload "send-null" is answered with a null QByteArray), and reported
 *                  as "msg ID N SUM" on stdout (N its size, SUM the FNV-1a of its bytes)
 * SUM is the FNV-1a 64 of the bytes, in hex. Pattern byte i is ((uint32)i * 2654435761) >> 24.
 *
 * Stdout lines: "listening FULLNAME", "listen-failed ERR TEXT", "connected ID",
 * "fullname ID FULLNAME" (client: the socket's fullServerName once connected),
 * "accepted ID name=NAME full=FULL" (server: an accepted socket's serverName, fullServerName),
 * "connect-failed ID ERR", "got ID N SUM", "closed ID err=ERR bin=N", "log ID TOKENS" (every
 * signal after the connection, lsock's names: error:PEER_CLOSED state:CLOSING
 * read_channel_finished(UNCONNECTED) disconnected(UNCONNECTED) about_to_close), "removed 0|1",
 * "done" (client: all connections closed), "timeout".
 *
 * Bounded lifetime: qt_peer exits on --timeout (default 30 s) and when its stdin reaches end of
 * file, so it never outlives the test that started it.
 */
#include <QCoreApplication>
#include <QDataStream>
#include <QLocalServer>
#include <QLocalSocket>
#include <QSocketNotifier>
#include <QTimer>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace
{

unsigned char patternByte(quint64 i)
{
    return (unsigned char)(((uint32_t)i * 2654435761u) >> 24);
}

const char *errName(QLocalSocket::LocalSocketError e)
{
    switch (e) {
    case QLocalSocket::ConnectionRefusedError:
        return "CONNECTION_REFUSED";
    case QLocalSocket::PeerClosedError:
        return "PEER_CLOSED";
    case QLocalSocket::ServerNotFoundError:
        return "SERVER_NOT_FOUND";
    case QLocalSocket::SocketAccessError:
        return "SOCKET_ACCESS";
    case QLocalSocket::SocketResourceError:
        return "SOCKET_RESOURCE";
    case QLocalSocket::SocketTimeoutError:
        return "SOCKET_TIMEOUT";
    case QLocalSocket::DatagramTooLargeError:
        return "DATAGRAM_TOO_LARGE";
    case QLocalSocket::ConnectionError:
        return "CONNECTION";
    case QLocalSocket::UnsupportedSocketOperationError:
        return "UNSUPPORTED_OPERATION";
    case QLocalSocket::OperationError:
        return "OPERATION";
    default:
        return "UNKNOWN";
    }
}

const char *stateName(QLocalSocket::LocalSocketState s)
{
    switch (s) {
    case QLocalSocket::UnconnectedState:
        return "UNCONNECTED";
    case QLocalSocket::ConnectingState:
        return "CONNECTING";
    case QLocalSocket::ConnectedState:
        return "CONNECTED";
    case QLocalSocket::ClosingState:
        return "CLOSING";
    }
    return "?";
}

void say(const QByteArray &line)
{
    fwrite(line.constData(), 1, (size_t)line.size(), stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

int openConnections = 0;
bool clientMode = false;

struct Conn {
    int id = 0;
    QLocalSocket *s = nullptr;
    QByteArray log;
    qint64 expectLeft = 0, expectTotal = 0;
    quint64 fnv = 14695981039346656037ull;
    qint64 readAbortLeft = -1;
    qint64 binReceived = 0;
    bool abortOnWritten = false;
    bool reported = false;
    QDataStream *messages = nullptr; /* set by the "messages" command */

    void add(const QByteArray &tok)
    {
        if (!log.isEmpty()) log += ' ';
        log += tok;
    }

    void writePattern(qint64 n)
    {
        QByteArray data((int)n, Qt::Uninitialized);
        for (qint64 i = 0; i < n; i++)
            data[(int)i] = (char)patternByte((quint64)i);
        s->write(data);
    }

    void command(const QByteArray &line)
    {
        int sp = line.indexOf(' ');
        QByteArray cmd = sp < 0 ? line : line.left(sp);
        QByteArray arg = sp < 0 ? QByteArray() : line.mid(sp + 1);
        qint64 n = arg.toLongLong();
        if (cmd == "line") {
            s->write("echo " + arg + "\n");
        } else if (cmd == "expect") {
            expectLeft = expectTotal = n;
            fnv = 14695981039346656037ull;
            if (n == 0) finishExpect();
        } else if (cmd == "send") {
            writePattern(n);
        } else if (cmd == "sendclose") {
            writePattern(n);
            s->disconnectFromServer();
        } else if (cmd == "sendabort") {
            abortOnWritten = true;
            writePattern(n);
        } else if (cmd == "readabort") {
            readAbortLeft = n;
        } else if (cmd == "close") {
            s->disconnectFromServer();
        } else if (cmd == "abort") {
            s->abort();
        } else if (cmd == "messages") {
            messages = new QDataStream(s);
        } else {
            say("unknown-command " + line);
        }
    }

    void finishExpect()
    {
        QByteArray sum = QByteArray::number(fnv, 16);
        QByteArray n = QByteArray::number(expectTotal);
        say("got " + QByteArray::number(id) + " " + n + " " + sum);
        s->write("got " + n + " " + sum + "\n");
    }

    /* The message mode: whole QByteArrays through QDataStream read transactions. */
    void readMessages()
    {
        for (;;) {
            messages->startTransaction();
            QByteArray m;
            *messages >> m;
            if (!messages->commitTransaction()) return;
            quint64 h = 14695981039346656037ull;
            for (char c : m) {
                h ^= (unsigned char)c;
                h *= 1099511628211ull;
            }
            say("msg " + QByteArray::number(id) + " " + QByteArray::number(m.size()) + " " +
                QByteArray::number(h, 16));
            if (m == "send-null")
                *messages << QByteArray();
            else
                *messages << m;
        }
    }

    void readable()
    {
        for (;;) {
            if (messages) {
                readMessages();
                return;
            }
            if (s->state() == QLocalSocket::UnconnectedState && s->bytesAvailable() == 0) return;
            if (readAbortLeft >= 0) {
                QByteArray d = s->read(readAbortLeft);
                readAbortLeft -= d.size();
                binReceived += d.size();
                if (readAbortLeft == 0) {
                    readAbortLeft = -1;
                    s->abort();
                    return;
                }
                if (d.isEmpty()) return;
                continue;
            }
            if (expectLeft > 0) {
                QByteArray d = s->read(expectLeft);
                if (d.isEmpty()) return;
                for (char c : d) {
                    fnv ^= (unsigned char)c;
                    fnv *= 1099511628211ull;
                }
                expectLeft -= d.size();
                binReceived += d.size();
                if (expectLeft == 0) finishExpect();
                continue;
            }
            if (!s->canReadLine()) return;
            QByteArray line = s->readLine();
            line.chop(1);
            command(line);
        }
    }

    void report()
    {
        if (reported) return;
        reported = true;
        say("closed " + QByteArray::number(id) + " err=" + errName(s->error()) +
            " bin=" + QByteArray::number(binReceived));
        say("log " + QByteArray::number(id) + " " + log);
        if (--openConnections == 0 && clientMode) {
            say("done");
            QTimer::singleShot(0, qApp, [] { qApp->exit(0); });
        }
    }
};

void attach(QLocalSocket *s, int id)
{
    Conn *c = new Conn;
    c->id = id;
    c->s = s;
    openConnections++;
    QObject::connect(s, &QLocalSocket::errorOccurred, s, [c](QLocalSocket::LocalSocketError e) {
        c->add(QByteArray("error:") + errName(e));
    });
    QObject::connect(s, &QLocalSocket::stateChanged, s, [c](QLocalSocket::LocalSocketState st) {
        c->add(QByteArray("state:") + stateName(st));
    });
    QObject::connect(s, &QLocalSocket::readChannelFinished, s, [c] {
        c->add(QByteArray("read_channel_finished(") + stateName(c->s->state()) + ")");
    });
    QObject::connect(s, &QLocalSocket::aboutToClose, s, [c] { c->add("about_to_close"); });
    QObject::connect(s, &QLocalSocket::disconnected, s, [c] {
        c->add(QByteArray("disconnected(") + stateName(c->s->state()) + ")");
        c->readable(); /* whatever is still buffered */
        /* Report a little later, so that signals emitted after disconnected are logged. */
        QTimer::singleShot(100, c->s, [c] { c->report(); });
    });
    QObject::connect(s, &QLocalSocket::readyRead, s, [c] { c->readable(); });
    QObject::connect(s, &QLocalSocket::bytesWritten, s, [c](qint64) {
        if (c->abortOnWritten) {
            c->abortOnWritten = false;
            c->s->abort();
        }
    });
    say("connected " + QByteArray::number(id));
    s->write("hello " + QByteArray::number(id) + "\n");
    c->readable();
}

/* AbstractNamespaceOption (Qt 6.2+); main() refuses --abstract without it. */
#if QT_VERSION >= QT_VERSION_CHECK(6, 2, 0)
constexpr bool haveAbstract = true;
void makeAbstract(QLocalSocket &s)
{
    s.setSocketOptions(QLocalSocket::AbstractNamespaceOption);
}
void makeAbstract(QLocalServer::SocketOptions &opts)
{
    opts |= QLocalServer::AbstractNamespaceOption;
}
#else
constexpr bool haveAbstract = false;
template <typename T> void makeAbstract(T &)
{
}
#endif

int usage()
{
    fprintf(stderr, "usage: qt_peer server|client|remove|waits NAME [--access A] [--count N] [--abstract] "
                    "[--timeout MS]\n");
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    if (argc < 3) return usage();
    QByteArray mode = argv[1];
    QString name = QString::fromLocal8Bit(argv[2]);
    QByteArray access = "none";
    int count = 1, timeout = 30000;
    bool abstract = false;
    for (int i = 3; i < argc; i += 2) {
        if (!strcmp(argv[i], "--abstract")) {
            abstract = true;
            i--;
        } else if (i + 1 >= argc)
            return usage();
        else if (!strcmp(argv[i], "--access"))
            access = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout"))
            timeout = atoi(argv[i + 1]);
        else
            return usage();
    }

    if (abstract && !haveAbstract) {
        say("unsupported abstract");
        return 1;
    }
    if (mode == "waits") {
        /* The canonical pattern: connectToServer(); if (!waitForConnected()) errorString().
         * "waits" then, after the connect and after each wait (connected, ready read, bytes
         * written, disconnected): the wait's result (1/0, "-" for the connect) and error(). */
        QLocalSocket s;
        if (abstract) makeAbstract(s);
        s.connectToServer(name);
        QByteArray out = QByteArray("waits - ") + errName(s.error());
        bool r = s.waitForConnected(100);
        out += QByteArray(" ") + (r ? "1 " : "0 ") + errName(s.error());
        r = s.waitForReadyRead(100);
        out += QByteArray(" ") + (r ? "1 " : "0 ") + errName(s.error());
        r = s.waitForBytesWritten(100);
        out += QByteArray(" ") + (r ? "1 " : "0 ") + errName(s.error());
        r = s.waitForDisconnected(100);
        out += QByteArray(" ") + (r ? "1 " : "0 ") + errName(s.error());
        say(out);
        return 0;
    }
    if (mode == "remove") {
        say(QByteArray("removed ") + (QLocalServer::removeServer(name) ? "1" : "0"));
        return 0;
    }

    QTimer::singleShot(timeout, &app, [] {
        say("timeout");
        qApp->exit(3);
    });
    /* The test holds our stdin: its end of file means the test is gone. */
    QSocketNotifier stdinWatch(0, QSocketNotifier::Read);
    QObject::connect(&stdinWatch, &QSocketNotifier::activated, &app, [&stdinWatch] {
        char buf[256];
        if (read(0, buf, sizeof buf) <= 0) {
            stdinWatch.setEnabled(false);
            qApp->exit(0);
        }
    });

    QLocalServer server;
    int nextId = 1;
    if (mode == "server") {
        QLocalServer::SocketOptions opts = QLocalServer::NoOptions;
        if (access == "user")
            opts = QLocalServer::UserAccessOption;
        else if (access == "group")
            opts = QLocalServer::GroupAccessOption;
        else if (access == "other")
            opts = QLocalServer::OtherAccessOption;
        else if (access == "world")
            opts = QLocalServer::WorldAccessOption;
        else if (access != "none")
            return usage();
        if (abstract) makeAbstract(opts);
        server.setSocketOptions(opts);
        QObject::connect(&server, &QLocalServer::newConnection, &app, [&server, &nextId] {
            while (QLocalSocket *s = server.nextPendingConnection()) {
                say("accepted " + QByteArray::number(nextId) + " name=" +
                    s->serverName().toLocal8Bit() + " full=" + s->fullServerName().toLocal8Bit());
                attach(s, nextId++);
            }
        });
        if (!server.listen(name)) {
            say("listen-failed " + QByteArray::number((int)server.serverError()) + " " +
                server.errorString().toLocal8Bit());
            return 1;
        }
        say("listening " + server.fullServerName().toLocal8Bit());
    } else if (mode == "client") {
        clientMode = true;
        for (int i = 0; i < count; i++) {
            QLocalSocket *s = new QLocalSocket(&app);
            if (abstract) makeAbstract(*s);
            int id = nextId++;
            QObject::connect(s, &QLocalSocket::connected, &app, [s, id] {
                say("fullname " + QByteArray::number(id) + " " + s->fullServerName().toLocal8Bit());
                attach(s, id);
            });
            s->connectToServer(name);
            if (s->state() == QLocalSocket::UnconnectedState) {
                say("connect-failed " + QByteArray::number(id) + " " + errName(s->error()));
                return 1;
            }
        }
    } else {
        return usage();
    }
    return app.exec();
}
