// raw_echo: the kernel floor for bench/echo_compare.py.
//
// A plain TCP echo on epoll that writes back every byte it reads, with no WebSocket at all.
// Whatever a WebSocket server spends per message above this is the cost of its own code.
//
//   raw_echo PORT [MAX_SECONDS]     listens on 127.0.0.1:PORT, one thread; exits on SIGTERM/SIGINT
//                                   or after MAX_SECONDS (default 3600)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// What the kernel did not take yet. While it is not empty the connection is not read
// (backpressure): an echo must not grow a buffer without bound.
struct Pending {
    std::string bytes;
    std::size_t off = 0;
    bool active = false;
};

std::vector<Pending> g_conns;  // indexed by descriptor: fds stay below RLIMIT_NOFILE

void closeConn(int fd) {
    g_conns[static_cast<std::size_t>(fd)] = Pending{};
    close(fd);  // also leaves the epoll set
}

void watch(int ep, int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

void onReadable(int ep, int fd, std::vector<char>& buf) {
    const ssize_t r = read(fd, buf.data(), buf.size());
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return closeConn(fd);
    if (r < 0) return;
    const auto n = static_cast<std::size_t>(r);
    ssize_t w = send(fd, buf.data(), n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN) return closeConn(fd);
        w = 0;
    }
    if (static_cast<std::size_t>(w) == n) return;
    Pending& p = g_conns[static_cast<std::size_t>(fd)];
    p.bytes.assign(buf.data() + w, n - static_cast<std::size_t>(w));
    p.off = 0;
    watch(ep, fd, EPOLLOUT);
}

void onWritable(int ep, int fd) {
    Pending& p = g_conns[static_cast<std::size_t>(fd)];
    const ssize_t w = send(fd, p.bytes.data() + p.off, p.bytes.size() - p.off, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN) closeConn(fd);
        return;
    }
    p.off += static_cast<std::size_t>(w);
    if (p.off < p.bytes.size()) return;
    p.bytes.clear();
    p.off = 0;
    watch(ep, fd, EPOLLIN | EPOLLRDHUP);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: raw_echo PORT [MAX_SECONDS]\n");
        return 2;
    }
    const int port = std::atoi(argv[1]);
    const double maxSeconds = argc > 2 ? std::atof(argv[2]) : 3600.0;

    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    g_conns.resize(static_cast<std::size_t>(rl.rlim_cur));

    const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4096) != 0) {
        std::perror("raw_echo: bind/listen");
        return 1;
    }

    const int ep = epoll_create1(EPOLL_CLOEXEC);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    for (int fd : {lfd, sfd}) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    std::vector<char> buf(std::size_t{1} << 18);  // one receive buffer shared by every connection
    std::array<epoll_event, 512> events{};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(maxSeconds);
    bool running = true;
    // Bounded by MAX_SECONDS: epoll_wait returns at least once a second to check it.
    while (running && std::chrono::steady_clock::now() < deadline) {
        const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
        for (int i = 0; i < n; ++i) {
            const epoll_event& ev = events[static_cast<std::size_t>(i)];
            const int fd = ev.data.fd;
            if (fd == sfd) {
                running = false;
            } else if (fd == lfd) {
                // Take a bounded batch of new connections per turn.
                for (int k = 0; k < 256; ++k) {
                    const int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    g_conns[static_cast<std::size_t>(cfd)].active = true;
                    epoll_event cev{};
                    cev.events = EPOLLIN | EPOLLRDHUP;
                    cev.data.fd = cfd;
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (!g_conns[static_cast<std::size_t>(fd)].active) {
                continue;  // closed earlier in this batch
            } else if (ev.events & EPOLLOUT) {
                onWritable(ep, fd);
            } else if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                onReadable(ep, fd, buf);
            }
        }
    }
    for (std::size_t fd = 0; fd < g_conns.size(); ++fd)
        if (g_conns[fd].active) close(static_cast<int>(fd));
    close(lfd);
    close(sfd);
    close(ep);
    return 0;
}
