/* SPDX-License-Identifier: MIT
 * The dashboard page (dashboard.html), built into the binary: no file to install. */
    .section .rodata
    .global lq_dashboard_html
    .type lq_dashboard_html, @object
lq_dashboard_html:
    .incbin "broker/http/dashboard.html"
    .global lq_dashboard_html_end
lq_dashboard_html_end:
    .byte 0
    .section .note.GNU-stack, "", @progbits
