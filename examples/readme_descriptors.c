#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L /* fileno, fdopen */
#endif
#include <lsock.h>
#include <stdio.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#define HANDLE_OF(f)   _get_osfhandle(_fileno(f))
#define OPEN_HANDLE(h) _fdopen(_open_osfhandle((h), _O_RDONLY), "r")
#else
#define HANDLE_OF(f)   ((intptr_t)fileno(f))
#define OPEN_HANDLE(h) fdopen((int)(h), "r")
#endif

/* The client passes an open file with one message; the server reads the file through its copy. */
int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-descriptors";
    FILE *file = tmpfile(), *copy = NULL;
    lsock_server *srv = lsock_server_new(NULL);
    lsock_socket *client = lsock_socket_new(NULL), *peer = NULL;
    intptr_t fd = file ? HANDLE_OF(file) : -1, got = -1;
    char msg[64], line[64] = "";
    bool ok = file && fputs("a line from a file the server never opened\n", file) >= 0 &&
              fflush(file) == 0 && fseek(file, 0, SEEK_SET) == 0 &&
              lsock_server_set_socket_options(srv, LSOCK_PASS_DESCRIPTORS) &&
              lsock_socket_set_options(client, LSOCK_PASS_DESCRIPTORS) &&
              lsock_server_listen(srv, name) &&
              lsock_socket_connect(client, name, LSOCK_READ_WRITE) &&
              lsock_server_wait_for_new_connection(srv, 5000, NULL) &&
              (peer = lsock_server_next_pending_connection(srv)) != NULL &&
              lsock_socket_attach_descriptors(client, &fd, 1) &&
              lsock_socket_write_message(client, "here is a file", 14) == 14;
    while (ok && !lsock_socket_can_read_message(peer))
        ok = lsock_socket_wait_for_ready_read(peer, 5000);
    ok = ok && lsock_socket_read_message(peer, msg, sizeof msg) == 14 &&
         lsock_socket_take_descriptors(peer, &got, 1) == 1 && (copy = OPEN_HANDLE(got)) != NULL &&
         fgets(line, sizeof line, copy) != NULL;
    if (ok)
        printf("\"%.14s\" came with a file; its first line: %s", msg, line);
    else
        fprintf(stderr, "%s\n", lsock_socket_error_string(peer ? peer : client));
    if (copy) fclose(copy);
    if (file) fclose(file);
    lsock_socket_free(peer);
    lsock_socket_free(client);
    lsock_server_free(srv);
    return ok ? 0 : 1;
}
