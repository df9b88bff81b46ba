# cmake -DSRC=dashboards -DDEST=dir -DVENDOR="uPlot.iife.min.js;uPlot.min.css" -P copy_dashboard.cmake
# Copies the dashboard's files and uPlot's dist files into DEST.
set(dist ${SRC}/node_modules/uplot/dist)
foreach(name IN LISTS VENDOR)
  if(NOT EXISTS ${dist}/${name})
    message(FATAL_ERROR "dashboard: ${dist}/${name} not found: dashboards/node_modules is missing or incomplete.\n"
      "Install the dashboard's npm packages (uPlot) first:\n"
      "    npm ci --prefix dashboards --no-audit --no-fund\n"
      "(scripts/test and scripts/demo do it; it needs Debian's nodejs and npm.)")
  endif()
  list(APPEND files ${dist}/${name})
endforeach()
file(MAKE_DIRECTORY ${DEST})
file(COPY ${SRC}/web/index.html ${SRC}/web/app.js ${SRC}/web/style.css ${files} DESTINATION ${DEST})
# file(COPY) keeps the sources' times; touch so the outputs are newer than
# what they were made from and the build does not redo this every time.
foreach(f index.html app.js style.css ${VENDOR})
  file(TOUCH_NOCREATE ${DEST}/${f})
endforeach()
